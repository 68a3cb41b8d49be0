package main

import (
	"bufio"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// spoofed are identity headers a client might send to pass for someone
// else, in the spellings servers and CGI-style upstreams accept.
var spoofed = []string{
	"X-Forwarded-User", "mallory",
	"X-Forwarded-Email", "mallory@example.test",
	"X-Forwarded-Preferred-Username", "mallory",
	"X-Forwarded-Groups", "admins",
	"X-Forwarded-Access-Token", "forged",
	"X_Forwarded_User", "mallory",
	"x-forwarded-email", "mallory@example.test",
	"X-Auth-Request-User", "mallory",
	"Authorization", "Bearer forged",
}

// checkNoSpoof fails if anything the client sent under an identity name
// reached the upstream.
func checkNoSpoof(t *testing.T, h http.Header) {
	t.Helper()
	for name, values := range h {
		for _, v := range values {
			if strings.Contains(v, "mallory") || strings.Contains(v, "forged") || v == "admins" {
				t.Errorf("the upstream received the client's %s: %q", name, v)
			}
		}
	}
}

// TestSignInThroughTheProxy runs the binary with -dev, signs in as a
// browser would, and checks what the upstream receives: the identity under
// oauth2-proxy's names, X-Forwarded-*, and none of the client's spoofed
// headers. Then the proxy's endpoints, and sign-out.
func TestSignInThroughTheProxy(t *testing.T) {
	up := newUpstream(t)
	p := startProxy(t, "-dev", "-upstream", up.URL)
	b := newBrowser(t)

	// Without a session: API clients get 401 and the upstream sees nothing.
	if resp, _ := b.get(p.base+"/api/things", "application/json"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("API request without a session: %d", resp.StatusCode)
	}
	if resp, _ := b.get(p.base+"/oauth2/auth", "*/*"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/oauth2/auth without a session: %d", resp.StatusCode)
	}

	resp, body := b.signIn(p.base+"/dashboard?tab=1", spoofed...)
	e := decodeEcho(t, resp, body)
	if e.URI != "/dashboard?tab=1" {
		t.Errorf("after sign-in the browser landed at %q, want /dashboard?tab=1", e.URI)
	}
	resp, body = b.get(p.base+"/dashboard?tab=2", "text/html", spoofed...)
	e = decodeEcho(t, resp, body)
	checkNoSpoof(t, e.Headers)
	want := map[string]string{
		"X-Forwarded-User":   "demo-user",
		"X-Forwarded-Email":  "demo@example.test",
		"X-Forwarded-Groups": "staff",
		"X-Forwarded-For":    "127.0.0.1",
		"X-Forwarded-Host":   strings.TrimPrefix(p.base, "http://"),
		"X-Forwarded-Proto":  "http",
	}
	for name, v := range want {
		if got := strings.Join(e.Headers[name], "|"); got != v {
			t.Errorf("upstream got %s %q, want %q", name, got, v)
		}
	}
	if e.Host != strings.TrimPrefix(p.base, "http://") {
		t.Errorf("upstream got Host %q, want the client's", e.Host)
	}
	if c := strings.Join(e.Headers["Cookie"], ";"); strings.Contains(c, "oidcrp") {
		t.Errorf("the proxy's session cookie reached the upstream: %q", c)
	}

	// The proxy's endpoints for the signed-in user.
	resp, body = b.get(p.base+"/oauth2/auth", "*/*", spoofed...)
	if resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Auth-Request-User") != "demo-user" ||
		resp.Header.Get("X-Auth-Request-Email") != "demo@example.test" || resp.Header.Get("X-Auth-Request-Groups") != "staff" {
		t.Errorf("/oauth2/auth signed in: %d %v %s", resp.StatusCode, resp.Header, body)
	}
	resp, body = b.get(p.base+"/oauth2/userinfo", "application/json")
	if resp.StatusCode != 200 || !strings.Contains(body, `"user":"demo-user"`) || !strings.Contains(body, `"email":"demo@example.test"`) || !strings.Contains(body, `"groups":["staff"]`) {
		t.Errorf("/oauth2/userinfo: %d %s", resp.StatusCode, body)
	}
	if resp, body := b.get(p.base+"/ready", "*/*"); resp.StatusCode != 200 || !strings.Contains(body, `"ready":true`) {
		t.Errorf("/ready: %d %s", resp.StatusCode, body)
	}
	if resp, body := b.get(p.base+"/ping", "*/*"); resp.StatusCode != 200 || body != "OK" {
		t.Errorf("/ping: %d %s", resp.StatusCode, body)
	}
	if resp, _ := b.get(p.base+"/oauth2/nothing", "*/*"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("/oauth2/nothing: %d, want 404", resp.StatusCode)
	}

	// Sign out (the sign-out page's form posts same-origin).
	out, _ := http.NewRequest(http.MethodPost, p.base+"/oauth2/sign_out", nil)
	out.Header.Set("Origin", p.base)
	out.Header.Set("Accept", "text/html")
	if resp, body := b.do(out); !strings.Contains(body, "signed out") {
		t.Fatalf("sign-out ended with %d: %s", resp.StatusCode, body)
	}
	if resp, _ := b.get(p.base+"/oauth2/auth", "*/*"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("/oauth2/auth after sign-out: %d", resp.StatusCode)
	}
	if _, body := b.get(p.base+"/dashboard", "text/html"); !strings.Contains(body, "not for production") {
		t.Errorf("after sign-out the provider did not ask again: %s", body)
	}
}

// TestStartAndPublicPaths checks /oauth2/start?rd= and that public paths
// reach the upstream without a session, without identity, and only when
// their path is clean.
func TestStartAndPublicPaths(t *testing.T) {
	up := newUpstream(t)
	p := startProxy(t, "-dev", "-upstream", up.URL, "-public-paths", "/healthz,/static/")
	b := newBrowser(t)

	resp, body := b.get(p.base+"/static/app.css", "text/css", spoofed...)
	e := decodeEcho(t, resp, body)
	checkNoSpoof(t, e.Headers)
	if e.Headers.Get("X-Forwarded-User") != "" {
		t.Errorf("a public path got an identity: %v", e.Headers)
	}
	if resp, _ := b.get(p.base+"/healthz", "*/*"); resp.StatusCode != 200 {
		t.Errorf("/healthz: %d", resp.StatusCode)
	}
	for _, path := range []string{"/healthz/more", "/static/../admin", "/static/%2e%2e/admin", "/staticx"} {
		if resp, _ := b.get(p.base+path, "application/json"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s without a session: %d, want 401", path, resp.StatusCode)
		}
	}

	resp, body = b.signIn(p.base + "/oauth2/start?rd=" + url.QueryEscape(p.base+"/after?x=1"))
	if e := decodeEcho(t, resp, body); e.URI != "/after?x=1" || e.Headers.Get("X-Forwarded-User") != "demo-user" {
		t.Errorf("/oauth2/start?rd= ended at %q as %q", e.URI, e.Headers.Get("X-Forwarded-User"))
	}
	resp, body = b.get(p.base+"/oauth2/start?rd=https://evil.example/x", "text/html")
	if e := decodeEcho(t, resp, body); e.URI != "/" {
		t.Errorf("/oauth2/start with a foreign rd ended at %q, want /", e.URI)
	}
}

// TestNotAllowed signs in a user the rules do not allow: a 403 page, no
// trip back to the provider, and 403 from /oauth2/auth; a user whose group
// is allowed passes.
func TestNotAllowed(t *testing.T) {
	op, stop, err := devop.Start("127.0.0.1:0", "", devop.Options{Claims: map[string]any{
		"sub": "bob", "email": "bob@contractor.test", "email_verified": true, "groups": []string{"contractors"}, "department": "sales",
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	up := newUpstream(t)

	for _, tc := range []struct {
		rule    []string
		allowed bool
	}{
		{[]string{"-allowed-email-domains", "example.test"}, false},
		{[]string{"-allowed-emails", "alice@contractor.test"}, false},
		{[]string{"-allowed-groups", "staff,admins"}, false},
		{[]string{"-allowed-claims", "department=engineering"}, false},
		{[]string{"-allowed-email-domains", "example.test,contractor.test", "-allowed-groups", "contractors"}, true},
		{[]string{"-allowed-emails", "BOB@contractor.test"}, true},
		{[]string{"-allowed-claims", "department=engineering,department=sales"}, true},
	} {
		t.Run(strings.Join(tc.rule, " "), func(t *testing.T) {
			p := startProxy(t, append([]string{"-issuer", op.Issuer(), "-upstream", up.URL}, tc.rule...)...)
			b := newBrowser(t)
			before := op.Stats().Authorize
			resp, body := b.signIn(p.base + "/page")
			if tc.allowed {
				if e := decodeEcho(t, resp, body); e.Headers.Get("X-Forwarded-User") != "bob" {
					t.Errorf("allowed user reached the upstream as %q", e.Headers.Get("X-Forwarded-User"))
				}
				return
			}
			if resp.StatusCode != http.StatusForbidden || !strings.Contains(body, "Access denied") || !strings.Contains(body, "bob@contractor.test") {
				t.Fatalf("a user who is not allowed got %d %s", resp.StatusCode, body)
			}
			if resp, _ := b.get(p.base+"/page", "text/html"); resp.StatusCode != http.StatusForbidden {
				t.Errorf("again: %d, want 403", resp.StatusCode)
			}
			if n := op.Stats().Authorize - before; n != 1 {
				t.Errorf("the provider saw %d authorization requests, want 1 (no login loop)", n)
			}
			if resp, _ := b.get(p.base+"/oauth2/auth", "*/*"); resp.StatusCode != http.StatusForbidden {
				t.Errorf("/oauth2/auth: %d, want 403", resp.StatusCode)
			}
		})
	}
}

// TestBadConfiguration checks that the binary refuses bad configuration
// with one line on standard error, before listening.
func TestBadConfiguration(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"-upstream", "http://127.0.0.1:1"}, nil, "-issuer (OIDC_ISSUER) is required"},
		{[]string{"-issuer", "https://op.example"}, nil, "-upstream (UPSTREAM) is required"},
		{[]string{"-dev", "-upstream", "127.0.0.1:3000"}, nil, "-upstream"},
		{[]string{"-dev", "-issuer", "https://op.example", "-upstream", "http://a"}, nil, "exclude each other"},
		{[]string{"-dev", "-upstream", "http://a", "-store", "s3://bucket"}, nil, "-store"},
		{[]string{"-dev", "-upstream", "http://a", "-public-url", "https://tool.example/app"}, nil, "-public-url"},
		{[]string{"-dev", "-upstream", "http://a", "-allowed-claims", "department"}, nil, "claim=value"},
		{[]string{"-dev", "-upstream", "http://a", "-public-paths", "/oauth2/"}, nil, "-public-paths"},
		{[]string{"-dev", "-upstream", "http://a", "-addr", "nonsense"}, nil, "-addr"},
		{[]string{"-dev", "-upstream", "http://a", "-bogus"}, nil, "flag provided but not defined: -bogus"},
		{[]string{"-dev", "-upstream", "http://a", "-addr", ":4180"}, nil, "-public-url (PUBLIC_URL) is required"},
		{[]string{"-dev", "-upstream", "http://a", "extra"}, nil, "unexpected argument"},
		{nil, []string{"UPSTREAM=http://a", "DEV=maybe"}, "DEV"},
		{nil, []string{"UPSTREAM=http://a", "OIDC_ISSUER=https://op.example", "CREDENTIAL_STORE=redis://:bad:port"}, "-store"},
	} {
		cmd := exec.Command(proxyBin, tc.args...)
		cmd.Env = append(cleanEnv(), tc.env...)
		var stderr strings.Builder
		cmd.Stderr = &stderr
		err := cmd.Run()
		out := strings.TrimSpace(stderr.String())
		if err == nil || strings.Count(out, "\n") != 0 || !strings.HasPrefix(out, "oidcrp-proxy: ") || !strings.Contains(out, tc.want) {
			t.Errorf("%q %q: exit %v, stderr %q; want one line mentioning %q", tc.args, tc.env, err, out, tc.want)
		}
	}
}

// TestWebSocketAndStreaming checks that upgrades pass both ways and that a
// streamed response reaches the client before the upstream finishes.
func TestWebSocketAndStreaming(t *testing.T) {
	release := make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("/ws", func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Upgrade") != "websocket" || r.Header.Get("X-Forwarded-User") != "demo-user" {
			http.Error(w, "want an upgrade from demo-user", http.StatusBadRequest)
			return
		}
		conn, rw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer conn.Close()
		fmt.Fprint(rw, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n")
		rw.Flush()
		line, _ := rw.ReadString('\n')
		fmt.Fprintf(rw, "echo %s", line)
		rw.Flush()
	})
	mux.HandleFunc("/events", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/event-stream")
		fmt.Fprint(w, "data: first\n\n")
		http.NewResponseController(w).Flush()
		<-release
		fmt.Fprint(w, "data: last\n\n")
	})
	mux.Handle("/", newUpstream(t).Config.Handler)
	up := newTestServer(t, mux)
	p := startProxy(t, "-dev", "-upstream", up)
	b := newBrowser(t)
	b.signIn(p.base + "/")
	u, _ := url.Parse(p.base)
	cookie := ""
	for _, c := range b.c.Jar.Cookies(u) {
		cookie += c.Name + "=" + c.Value + "; "
	}

	// WebSocket: a raw upgrade, then one line each way.
	conn, err := net.Dial("tcp", u.Host)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	fmt.Fprintf(conn, "GET /ws HTTP/1.1\r\nHost: %s\r\nCookie: %s\r\nConnection: Upgrade\r\nUpgrade: websocket\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n", u.Host, cookie)
	br := bufio.NewReader(conn)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != http.StatusSwitchingProtocols {
		t.Fatalf("upgrade: %v %v", resp, err)
	}
	fmt.Fprint(conn, "hello\n")
	if line, err := br.ReadString('\n'); line != "echo hello\n" {
		t.Errorf("over the upgraded connection: %q %v", line, err)
	}

	// Streaming: the first event arrives while the upstream still holds the response open.
	req, _ := http.NewRequest(http.MethodGet, p.base+"/events", nil)
	req.Header.Set("Accept", "text/event-stream")
	sresp, err := b.c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer sresp.Body.Close()
	first := make(chan string, 1)
	go func() {
		line, _ := bufio.NewReader(sresp.Body).ReadString('\n')
		first <- line
	}()
	select {
	case line := <-first:
		if line != "data: first\n" {
			t.Errorf("first streamed line %q", line)
		}
	case <-time.After(5 * time.Second):
		t.Error("the streamed event did not arrive before the upstream finished")
	}
	close(release)
	io.Copy(io.Discard, sresp.Body)
}

// TestPassAccessToken checks -pass-access-token: the upstream and
// /oauth2/auth get the user's access token, and a client's forged one never
// passes.
func TestPassAccessToken(t *testing.T) {
	up := newUpstream(t)
	p := startProxy(t, "-dev", "-upstream", up.URL, "-pass-access-token")
	b := newBrowser(t)
	b.signIn(p.base + "/")
	resp, body := b.get(p.base+"/", "text/html", spoofed...)
	e := decodeEcho(t, resp, body)
	checkNoSpoof(t, e.Headers)
	at := e.Headers.Get("X-Forwarded-Access-Token")
	if at == "" {
		t.Fatalf("no access token reached the upstream: %v", e.Headers)
	}
	if resp, _ := b.get(p.base+"/oauth2/auth", "*/*"); resp.Header.Get("X-Auth-Request-Access-Token") != at {
		t.Errorf("/oauth2/auth: access token %q, want the upstream's %q", resp.Header.Get("X-Auth-Request-Access-Token"), at)
	}
}

// TestPassAuthorizationHeader checks -pass-authorization-header: the
// upstream gets the user's ID token as Authorization: Bearer (a JWT of the
// provider about the signed-in user), never the client's; without the flag
// no Authorization header passes at all.
func TestPassAuthorizationHeader(t *testing.T) {
	op, stop, err := devop.Start("127.0.0.1:0", "", devop.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	up := newUpstream(t)
	p := startProxy(t, "-issuer", op.Issuer(), "-upstream", up.URL, "-pass-authorization-header")
	b := newBrowser(t)
	b.signIn(p.base + "/")
	resp, body := b.get(p.base+"/", "text/html", spoofed...)
	e := decodeEcho(t, resp, body)
	authz := e.Headers["Authorization"]
	if len(authz) != 1 || !strings.HasPrefix(authz[0], "Bearer ") {
		t.Fatalf("upstream got Authorization %q, want one Bearer", authz)
	}
	parts := strings.Split(strings.TrimPrefix(authz[0], "Bearer "), ".")
	if len(parts) != 3 {
		t.Fatalf("the bearer is not a JWT: %q", authz[0])
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var claims struct{ Sub, Iss string }
	if err := json.Unmarshal(payload, &claims); err != nil {
		t.Fatal(err)
	}
	if claims.Sub != "demo-user" || claims.Iss != op.Issuer() {
		t.Errorf("the ID token is about %q from %q, want demo-user from %q", claims.Sub, claims.Iss, op.Issuer())
	}
	// Also /oauth2/auth does not echo a client's Authorization back.
	if resp, _ := b.get(p.base+"/oauth2/auth", "*/*", "Authorization", "Bearer forged"); resp.Header.Get("Authorization") != "" {
		t.Errorf("/oauth2/auth answered Authorization %q", resp.Header.Get("Authorization"))
	}

	// Without the flag: nothing, whatever the client sends.
	q := startProxy(t, "-issuer", op.Issuer(), "-upstream", up.URL)
	b = newBrowser(t)
	b.signIn(q.base + "/")
	resp, body = b.get(q.base+"/", "text/html", spoofed...)
	if e := decodeEcho(t, resp, body); e.Headers["Authorization"] != nil {
		t.Errorf("without -pass-authorization-header the upstream got Authorization %q", e.Headers["Authorization"])
	}
}
