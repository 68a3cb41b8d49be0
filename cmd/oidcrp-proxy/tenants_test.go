package main

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"net"
	"net/http"
	"net/url"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// localtestBrowser is a browser for which every *.localtest host is the
// loopback interface, as a DNS entry for the proxy's tenants would be.
func localtestBrowser(t *testing.T) *browser {
	b := newBrowser(t)
	tr := http.DefaultTransport.(*http.Transport).Clone()
	dial := (&net.Dialer{Timeout: 5 * time.Second}).DialContext
	tr.DialContext = func(ctx context.Context, network, addr string) (net.Conn, error) {
		if host, port, err := net.SplitHostPort(addr); err == nil && strings.HasSuffix(host, ".localtest") {
			addr = net.JoinHostPort("127.0.0.1", port)
		}
		return dial(ctx, network, addr)
	}
	t.Cleanup(tr.CloseIdleConnections)
	b.c.Transport = tr
	return b
}

// idTokenClaims decodes the payload of the Bearer token in an Authorization
// header.
func idTokenClaims(t *testing.T, h http.Header) (sub, iss string) {
	t.Helper()
	parts := strings.Split(strings.TrimPrefix(h.Get("Authorization"), "Bearer "), ".")
	if len(parts) != 3 {
		t.Fatalf("Authorization %q is not a Bearer JWT", h.Get("Authorization"))
	}
	payload, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatal(err)
	}
	var c struct{ Sub, Iss string }
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatal(err)
	}
	return c.Sub, c.Iss
}

// TestTenantsByHost runs the binary with two -tenant hosts, each at its own
// development provider: each host signs in at its provider and passes its
// user on, a session of one host is refused at the other, the host is
// matched whatever its case, port or trailing dot, and any other host gets
// 404.
func TestTenantsByHost(t *testing.T) {
	start := func(sub string) *devop.Provider {
		op, stop, err := devop.Start("127.0.0.1:0", "", devop.Options{Claims: map[string]any{
			"sub": sub, "email": sub + "@example.test", "email_verified": true,
		}})
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(stop)
		return op
	}
	opA, opB := start("alice"), start("bob")
	up := newUpstream(t)
	addr := freeAddr(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	hostA, hostB := "a.localtest:"+port, "b.localtest:"+port
	p := startProxy(t, "-addr", addr, "-upstream", up.URL, "-pass-authorization-header",
		"-tenant", "a.localtest="+opA.Issuer(), "-tenant", "B.LocalTest.="+opB.Issuer())
	b := localtestBrowser(t)

	for _, tc := range []struct {
		host, sub string
		op        *devop.Provider
	}{{hostA, "alice", opA}, {hostB, "bob", opB}} {
		resp, body := b.signIn("http://" + tc.host + "/page?x=1")
		e := decodeEcho(t, resp, body)
		if e.URI != "/page?x=1" || e.Host != tc.host {
			t.Errorf("%s: after sign-in the browser landed at %s%s", tc.host, e.Host, e.URI)
		}
		resp, body = b.get("http://"+tc.host+"/page", "text/html", spoofed...)
		e = decodeEcho(t, resp, body)
		checkNoSpoof(t, e.Headers)
		if got := e.Headers.Get("X-Forwarded-User"); got != tc.sub {
			t.Errorf("%s: the upstream got user %q, want %q", tc.host, got, tc.sub)
		}
		if c := strings.Join(e.Headers["Cookie"], ";"); strings.Contains(c, "oidcrp") {
			t.Errorf("%s: the tenant's session cookie reached the upstream: %q", tc.host, c)
		}
		if got := e.Headers.Get("X-Forwarded-Host"); got != tc.host {
			t.Errorf("%s: the upstream got X-Forwarded-Host %q", tc.host, got)
		}
		if sub, iss := idTokenClaims(t, e.Headers); sub != tc.sub || iss != tc.op.Issuer() {
			t.Errorf("%s: the ID token is about %q from %q, want %q from %q", tc.host, sub, iss, tc.sub, tc.op.Issuer())
		}
		if resp, _ := b.get("http://"+tc.host+"/oauth2/auth", "*/*"); resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Auth-Request-User") != tc.sub {
			t.Errorf("%s: /oauth2/auth %d %q", tc.host, resp.StatusCode, resp.Header.Get("X-Auth-Request-User"))
		}
		if resp, body := b.get("http://"+tc.host+"/oauth2/userinfo", "application/json"); !strings.Contains(body, `"user":"`+tc.sub+`"`) {
			t.Errorf("%s: /oauth2/userinfo %d %s", tc.host, resp.StatusCode, body)
		}
	}
	for _, op := range []*devop.Provider{opA, opB} {
		if s := op.Stats(); s.Registration != 1 || s.Authorize != 1 {
			t.Errorf("provider %s: %d registrations and %d authorization requests, want 1 each", op.Issuer(), s.Registration, s.Authorize)
		}
	}

	// A client that sends a's cookies under other Host headers, to the
	// proxy's loopback address.
	var cookies []string
	for _, c := range b.c.Jar.Cookies(&url.URL{Scheme: "http", Host: hostA}) {
		cookies = append(cookies, c.Name+"="+c.Value)
	}
	send := func(host, path string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, p.base+path, nil)
		req.Host = host
		req.Header.Set("Accept", "application/json")
		req.Header.Set("Cookie", strings.Join(cookies, "; "))
		return newBrowser(t).do(req)
	}
	for _, host := range []string{hostA, "A.LOCALTEST:" + port, "a.localtest.:" + port, "a.localtest"} {
		if resp, _ := send(host, "/oauth2/auth"); resp.StatusCode != http.StatusAccepted || resp.Header.Get("X-Auth-Request-User") != "alice" {
			t.Errorf("a's session with Host %s: %d %q, want 202 alice", host, resp.StatusCode, resp.Header.Get("X-Auth-Request-User"))
		}
	}
	for _, path := range []string{"/oauth2/auth", "/page"} {
		if resp, body := send(hostB, path); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("a's session at b's %s: %d %s, want 401", path, resp.StatusCode, body)
		}
	}
	for _, host := range []string{"c.localtest:" + port, strings.TrimPrefix(p.base, "http://"), "localtest", "a.localtest.evil"} {
		for _, path := range []string{"/page", "/oauth2/auth", "/oauth2/start", "/oauth2/callback"} {
			if resp, body := send(host, path); resp.StatusCode != http.StatusNotFound {
				t.Errorf("Host %s %s: %d %s, want 404", host, path, resp.StatusCode, body)
			}
		}
	}
	if resp, body := send("c.localtest", "/ready"); resp.StatusCode != http.StatusOK || !strings.Contains(body, `"tenant":"a.localtest"`) || !strings.Contains(body, `"tenant":"b.localtest"`) {
		t.Errorf("/ready: %d %s", resp.StatusCode, body)
	}

	// Signing out at a ends a's session only.
	out, _ := http.NewRequest(http.MethodPost, "http://"+hostA+"/oauth2/sign_out", nil)
	out.Header.Set("Origin", "http://"+hostA)
	out.Header.Set("Accept", "text/html")
	if resp, body := b.do(out); !strings.Contains(body, "signed out") {
		t.Fatalf("sign-out at a ended with %d: %s", resp.StatusCode, body)
	}
	if resp, _ := b.get("http://"+hostA+"/oauth2/auth", "*/*"); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("a after sign-out: %d, want 401", resp.StatusCode)
	}
	if resp, _ := b.get("http://"+hostB+"/oauth2/auth", "*/*"); resp.StatusCode != http.StatusAccepted {
		t.Errorf("b after sign-out at a: %d, want 202", resp.StatusCode)
	}
}

// TestTenantsConfiguration checks the TENANTS fallback and that bad tenant
// configuration is refused at start with one line.
func TestTenantsConfiguration(t *testing.T) {
	for _, tc := range []struct {
		args []string
		env  []string
		want string
	}{
		{[]string{"-upstream", "http://a", "-tenant", "a.example"}, nil, "HOST=ISSUER"},
		{[]string{"-upstream", "http://a", "-tenant", "a.example:8080=https://op.example"}, nil, "without port"},
		{[]string{"-upstream", "http://a", "-tenant", "a.example=op.example"}, nil, "not an http(s) URL"},
		{[]string{"-upstream", "http://a", "-tenant", "a.example=https://op.example", "-tenant", "A.example.=https://op2.example"}, nil, "twice"},
		{[]string{"-upstream", "http://a", "-tenant", "a.example=https://op.example", "-issuer", "https://op.example"}, nil, "excludes -issuer"},
		{[]string{"-upstream", "http://a", "-tenant", "a.example=https://op.example", "-dev"}, nil, "excludes -issuer"},
		{[]string{"-upstream", "http://a", "-tenant", "a.example=https://op.example", "-store-key", "k"}, nil, "-store-key"},
		{nil, []string{"UPSTREAM=http://a", "TENANTS=a.example=https://op.example,b.example"}, "TENANTS"},
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

	// TENANTS configures the tenants when no -tenant is given.
	op, stop, err := devop.Start("127.0.0.1:0", "", devop.Options{})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	up := newUpstream(t)
	addr := freeAddr(t)
	port := addr[strings.LastIndexByte(addr, ':')+1:]
	p := startProxyEnv(t, []string{"TENANTS=x.localtest=" + op.Issuer() + ", y.localtest=" + op.Issuer()}, "-addr", addr, "-upstream", up.URL)
	var b *browser
	for _, host := range []string{"x.localtest", "y.localtest"} {
		b = localtestBrowser(t) // a browser each: no single sign-on at the provider
		resp, body := b.signIn("http://" + host + ":" + port + "/")
		if e := decodeEcho(t, resp, body); e.Headers.Get("X-Forwarded-User") != "demo-user" {
			t.Errorf("%s: user %q", host, e.Headers.Get("X-Forwarded-User"))
		}
	}
	if s := op.Stats(); s.Registration != 2 {
		t.Errorf("two tenants at one provider made %d registrations, want 2", s.Registration)
	}
	if resp, _ := b.get(p.base+"/", "application/json"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("the proxy's own address, not a tenant's: %d, want 404", resp.StatusCode)
	}
}
