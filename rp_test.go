package oidcrp

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/ed25519"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"math/big"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/sessions"
	"github.com/oidcrp/oidcrp/internal/devop"
)

// testEnv is a provider and an application protected by an RP, both on
// httptest TLS servers, and a browser with a cookie jar that stops at every
// redirect.
type testEnv struct {
	t       *testing.T
	op      *devop.Provider
	opSrv   *httptest.Server
	rp      *RP
	app     *httptest.Server
	browser *http.Client
	logs    *syncBuffer
	handled atomic.Int32 // requests that reached the protected handler
	clock   *fakeClock
}

type syncBuffer struct {
	mu      sync.Mutex
	b       bytes.Buffer
	written chan struct{} // closed by the next Write, if a waiter made it
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.written != nil {
		close(s.written)
		s.written = nil
	}
	return s.b.Write(p)
}

// waitFor waits until the logs contain substr; t fails if they do not
// within timeout.
func (s *syncBuffer) waitFor(t *testing.T, substr string, timeout time.Duration) {
	t.Helper()
	deadline := time.NewTimer(timeout)
	defer deadline.Stop()
	for {
		s.mu.Lock()
		if strings.Contains(s.b.String(), substr) {
			s.mu.Unlock()
			return
		}
		if s.written == nil {
			s.written = make(chan struct{})
		}
		written := s.written
		s.mu.Unlock()
		select {
		case <-written:
		case <-deadline.C:
			t.Fatalf("no log line containing %q within %v; logs:\n%s", substr, timeout, s)
		}
	}
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

type fakeClock struct {
	mu     sync.Mutex
	offset time.Duration
}

func (c *fakeClock) Now() time.Time {
	c.mu.Lock()
	defer c.mu.Unlock()
	return time.Now().Add(c.offset)
}

func (c *fakeClock) Advance(d time.Duration) {
	c.mu.Lock()
	c.offset += d
	c.mu.Unlock()
}

// testKeys are provider signing keys generated once per test binary:
// generating an RSA-2048 key for every provider was most of the time these
// tests took. See providerKey.
var testKeys = sync.OnceValue(func() []*rsa.PrivateKey {
	keys := make([]*rsa.PrivateKey, 2) // no test starts more than two providers
	var wg sync.WaitGroup
	for i := range keys {
		wg.Go(func() {
			k, err := rsa.GenerateKey(rand.Reader, 2048)
			if err != nil {
				panic(err)
			}
			keys[i] = k
		})
	}
	wg.Wait()
	return keys
})

var providersOf sync.Map // testing.TB → *atomic.Int32: providers started by the test

// providerKey returns the signing key for the next provider t starts: the
// providers of one test have distinct keys, so that no token of one verifies
// at another. Providers of different tests may share a key; they share
// nothing else. Past the pool, nil: the provider generates its own.
func providerKey(t testing.TB) *rsa.PrivateKey {
	n, loaded := providersOf.LoadOrStore(t, new(atomic.Int32))
	if !loaded {
		t.Cleanup(func() { providersOf.Delete(t) })
	}
	if i := int(n.(*atomic.Int32).Add(1)) - 1; i < len(testKeys()) {
		return testKeys()[i]
	}
	return nil
}

// testCert is a self-signed ECDSA certificate for 127.0.0.1, ::1 and
// example.com, shared by the tests' TLS servers: with httptest's RSA
// certificate, TLS handshakes were the largest cost left.
var testCert = sync.OnceValue(func() tls.Certificate {
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber:          big.NewInt(1),
		Subject:               pkix.Name{Organization: []string{"oidcrp tests"}},
		NotBefore:             time.Now().Add(-time.Hour),
		NotAfter:              time.Now().Add(24 * time.Hour),
		KeyUsage:              x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign,
		ExtKeyUsage:           []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		BasicConstraintsValid: true,
		IsCA:                  true,
		IPAddresses:           []net.IP{net.IPv4(127, 0, 0, 1), net.IPv6loopback},
		DNSNames:              []string{"example.com", "*.example.com", "localhost"},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		panic(err)
	}
	return tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}
})

// newTLSServer is httptest.NewTLSServer with testCert. The Client of any
// such server trusts all of them, as with httptest's own certificate.
func newTLSServer(h http.Handler) *httptest.Server {
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = &tls.Config{Certificates: []tls.Certificate{testCert()}}
	srv.StartTLS()
	return srv
}

func newOP(t *testing.T, opts devop.Options) (*devop.Provider, *httptest.Server) {
	t.Helper()
	if opts.SigningKey == nil {
		opts.SigningKey = providerKey(t)
	}
	op := devop.New(opts)
	srv := newTLSServer(op)
	t.Cleanup(srv.Close)
	op.SetIssuer(srv.URL)
	return op, srv
}

// newEnv starts a provider with opts and an application whose RP is
// configured by cfg (Issuer, RedirectURL, HTTPClient and Logger are filled
// in when empty).
func newEnv(t *testing.T, opts devop.Options, cfg Config) *testEnv {
	t.Helper()
	opts.AutoLogin = true
	e := &testEnv{t: t, logs: &syncBuffer{}, clock: &fakeClock{}}
	if opts.Now == nil {
		opts.Now = e.clock.Now // the provider and the relying party share one clock
	}
	e.op, e.opSrv = newOP(t, opts)
	e.app = newTLSServer(nil)
	t.Cleanup(e.app.Close)
	e.rp = e.newRP(cfg)
	e.app.Config.Handler = e.handler(e.rp)
	jar, _ := cookiejar.New(nil)
	e.browser = &http.Client{
		Jar:           jar,
		Transport:     e.opSrv.Client().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
	t.Cleanup(func() { assertNoSecretsLogged(t, e) })
	return e
}

func (e *testEnv) newRP(cfg Config) *RP {
	e.t.Helper()
	if cfg.Issuer == "" {
		cfg.Issuer = e.op.Issuer()
	}
	if cfg.RedirectURL == "" {
		cfg.RedirectURL = e.app.URL + "/auth/callback"
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = e.opSrv.Client()
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(e.logs, &slog.HandlerOptions{Level: slog.LevelDebug}))
	}
	rp, err := New(cfg)
	if err != nil {
		e.t.Fatal(err)
	}
	rp.now = e.clock.Now
	return rp
}

func (e *testEnv) handler(rp *RP) http.Handler {
	mux := http.NewServeMux()
	protected := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.handled.Add(1)
		u, ok := UserFromContext(r.Context())
		if !ok {
			http.Error(w, "no user in context", http.StatusInternalServerError)
			return
		}
		claims := map[string]any{}
		if err := u.Claims(&claims); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(map[string]any{"sub": u.Subject, "iss": u.Issuer, "claims": claims, "path": r.URL.RequestURI(),
			"access_token": u.AccessToken()})
	})
	mux.Handle("/", rp.Require(protected))
	mux.Handle("/signin", rp.LoginHandler())
	mux.Handle("/public", rp.Optional(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, ok := UserFromContext(r.Context()); ok {
			fmt.Fprint(w, "hello ", u.Subject)
			return
		}
		fmt.Fprint(w, "hello stranger")
	})))
	return mux
}

// get makes a browser navigation (or, with accept "", an API request).
func (e *testEnv) get(rawURL, accept string) *http.Response {
	e.t.Helper()
	req, err := http.NewRequest(http.MethodGet, rawURL, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	if accept != "" {
		req.Header.Set("Accept", accept)
	}
	resp, err := e.browser.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

const html = "text/html,application/xhtml+xml"

// follow follows redirects from resp until a non-redirect answer, returning
// every response on the way.
func (e *testEnv) follow(resp *http.Response) []*http.Response {
	e.t.Helper()
	hops := []*http.Response{resp}
	for i := 0; i < 10 && resp.StatusCode >= 300 && resp.StatusCode < 400; i++ {
		resp.Body.Close()
		next, err := resp.Request.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			e.t.Fatal(err)
		}
		resp = e.get(next.String(), html)
		hops = append(hops, resp)
	}
	return hops
}

// login signs in through the whole flow starting at path and returns the
// final response's decoded JSON.
func (e *testEnv) login(path string) map[string]any {
	e.t.Helper()
	hops := e.follow(e.get(e.app.URL+path, html))
	last := hops[len(hops)-1]
	defer last.Body.Close()
	body, _ := io.ReadAll(last.Body)
	if last.StatusCode != http.StatusOK {
		e.t.Fatalf("login via %s ended with %d: %s\nlogs:\n%s", path, last.StatusCode, body, e.logs)
	}
	var out map[string]any
	if err := json.Unmarshal(body, &out); err != nil {
		e.t.Fatalf("final page is not JSON: %s", body)
	}
	return out
}

// cookie returns the browser's cookie named name, or "__Host-" and name
// (the name of the RP's cookies over https).
func (e *testEnv) cookie(name string) *http.Cookie {
	u, _ := url.Parse(e.app.URL)
	for _, c := range e.browser.Jar.Cookies(u) {
		if c.Name == name || c.Name == hostPrefix+name {
			return c
		}
	}
	return nil
}

// replay sends an API request to path carrying only the given cookie, as an
// attacker or a stale tab would, and returns the status.
func (e *testEnv) replay(path string, c *http.Cookie) int {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.app.URL+path, nil)
	req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	resp, err := (&http.Client{Transport: e.browser.Transport}).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

// postLogout signs the browser out through POST /logout (not following the
// redirect) and returns the response.
func (e *testEnv) postLogout() *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.app.URL+"/logout", nil)
	req.Header.Set("Origin", e.app.URL)
	resp, err := e.browser.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	return resp
}

// attempt follows a browser navigation to path through every redirect and
// returns the last response's status and body.
func (e *testEnv) attempt(path string) (int, string) {
	e.t.Helper()
	hops := e.follow(e.get(e.app.URL+path, html))
	last := hops[len(hops)-1]
	defer last.Body.Close()
	b, _ := io.ReadAll(last.Body)
	return last.StatusCode, string(b)
}

// setCookieNamed returns the cookie named name, or "__Host-" and name,
// that resp sets.
func setCookieNamed(resp *http.Response, name string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if c.Name == name || c.Name == hostPrefix+name {
			return c
		}
	}
	return nil
}

// assertNoSecretsLogged scans the logs for every secret the provider issued.
func assertNoSecretsLogged(t *testing.T, e *testEnv) {
	logs := e.logs.String()
	for _, c := range e.op.Clients() {
		for _, s := range []string{c.Secret, c.RegistrationAccessToken} {
			if s != "" && strings.Contains(logs, s) {
				t.Errorf("a secret of client %s appears in the logs", c.ID)
			}
		}
	}
	if q := e.op.LastAuthorizeRequest(); q != nil {
		for _, k := range []string{"state", "nonce", "code_challenge"} {
			if v := q.Get(k); v != "" && strings.Contains(logs, v) {
				t.Errorf("%s appears in the logs", k)
			}
		}
	}
	if form, _ := e.op.LastTokenRequest(); form != nil {
		for _, k := range []string{"code", "code_verifier", "client_secret"} {
			if v := form.Get(k); v != "" && strings.Contains(logs, v) {
				t.Errorf("token request %s appears in the logs", k)
			}
		}
	}
}

func TestLoginEndToEnd(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	if s := e.op.Stats(); s.Discovery+s.Registration != 0 {
		t.Fatalf("New made requests: %+v", s)
	}

	// 1. An unauthenticated navigation is sent to the provider.
	resp := e.get(e.app.URL+"/deep/page?x=1", html)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("first hop: %d, want 302", resp.StatusCode)
	}
	auth, _ := url.Parse(resp.Header.Get("Location"))
	q := auth.Query()
	if !strings.HasPrefix(auth.String(), e.op.Issuer()) {
		t.Fatalf("redirected to %s, not the provider", auth)
	}
	clients := e.op.Clients()
	if len(clients) != 1 {
		t.Fatalf("%d clients registered, want 1", len(clients))
	}
	for k, want := range map[string]string{
		"response_type": "code", "client_id": clients[0].ID, "redirect_uri": e.app.URL + "/auth/callback",
		"code_challenge_method": "S256",
	} {
		if got := q.Get(k); got != want {
			t.Errorf("authorize %s = %q, want %q", k, got, want)
		}
	}
	for _, k := range []string{"state", "nonce", "code_challenge"} {
		if len(q.Get(k)) < 43 {
			t.Errorf("authorize %s = %q, want ≥ 43 random characters", k, q.Get(k))
		}
	}
	if !strings.Contains(" "+q.Get("scope")+" ", " openid ") {
		t.Errorf("scope %q lacks openid", q.Get("scope"))
	}
	flowCookie := setCookieNamed(resp, flowCookieName(q.Get("state")))
	if flowCookie == nil || !flowCookie.HttpOnly || !flowCookie.Secure || flowCookie.SameSite != http.SameSiteLaxMode {
		t.Fatalf("login cookie %+v: want HttpOnly, Secure, SameSite=Lax", flowCookie)
	}
	if strings.Contains(flowCookie.Value, q.Get("nonce")) {
		t.Error("login cookie shows the nonce in clear")
	}

	// 2. The provider answers at the callback with code, state and iss.
	resp = e.get(auth.String(), html)
	resp.Body.Close()
	cb, _ := url.Parse(resp.Header.Get("Location"))
	if cb.Path != "/auth/callback" || cb.Query().Get("iss") != e.op.Issuer() || cb.Query().Get("state") != q.Get("state") {
		t.Fatalf("provider redirect %s", cb)
	}

	// 3. The callback sets the session, deletes the login cookie and returns to the page.
	resp = e.get(cb.String(), html)
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther || resp.Header.Get("Location") != "/deep/page?x=1" {
		t.Fatalf("callback: %d to %q, want 303 to /deep/page?x=1\n%s", resp.StatusCode, resp.Header.Get("Location"), e.logs)
	}
	sess := setCookieNamed(resp, "oidcrp")
	if sess == nil || !sess.HttpOnly || !sess.Secure || sess.SameSite != http.SameSiteLaxMode || sess.Path != "/" {
		t.Fatalf("session cookie %+v: want HttpOnly, Secure, SameSite=Lax, Path=/", sess)
	}
	if len(sess.Value) > 2048 {
		t.Errorf("session cookie is %d bytes", len(sess.Value))
	}
	if del := setCookieNamed(resp, flowCookie.Name); del == nil || del.MaxAge >= 0 {
		t.Errorf("login cookie not deleted: %+v", del)
	}
	if form, hdr := e.op.LastTokenRequest(); form.Get("code_verifier") == "" || hdr.Get("Authorization") == "" {
		t.Errorf("token request lacks PKCE verifier or basic auth: %v", form)
	}

	// 4. The handler sees the user, with ID token and userinfo claims.
	resp = e.get(e.app.URL+"/deep/page?x=1", html)
	var out map[string]any
	json.NewDecoder(resp.Body).Decode(&out)
	resp.Body.Close()
	claims, _ := out["claims"].(map[string]any)
	if out["sub"] != "demo-user" || out["iss"] != e.op.Issuer() || claims["email"] != "demo@example.test" {
		t.Fatalf("handler saw %v", out)
	}
	if s := e.op.Stats(); s.Registration != 1 || s.Discovery != 1 || s.UserInfo != 1 || s.Token != 1 {
		t.Errorf("provider stats %+v", s)
	}
	// Optional sees the same user; an API request with the session passes too.
	resp = e.get(e.app.URL+"/public", "")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello demo-user" {
		t.Errorf("Optional: %q", b)
	}
}

func TestNonBrowserGets401(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	for _, accept := range []string{"", "application/json", "*/*"} {
		resp := e.get(e.app.URL+"/api", accept)
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusUnauthorized || !strings.Contains(string(body), string(ReasonLoginRequired)) {
			t.Errorf("Accept %q: %d %s, want 401 JSON", accept, resp.StatusCode, body)
		}
	}
	if s := e.op.Stats(); s.Discovery != 0 {
		t.Errorf("an API request without session triggered discovery: %+v", s)
	}
	resp := e.get(e.app.URL+"/public", "")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "hello stranger" {
		t.Errorf("Optional without session: %q", b)
	}
}

// TestCallbackRejections drives a login with a provider that misbehaves in
// one way each, and checks that no session results and the handler never runs.
// alter changes the last character of s, whatever it is.
func alter(s string) string {
	last := byte('A')
	if s[len(s)-1] == last {
		last = 'B'
	}
	return s[:len(s)-1] + string(last)
}

func TestCallbackRejections(t *testing.T) {
	t.Parallel()
	// The first provider of every test signs with testKeys()[0]: the forged
	// token below names a kid the relying party finds in its provider's JWKS,
	// and only the signature gives it away.
	foreign := devop.New(devop.Options{SigningKey: testKeys()[0]})
	cases := []struct {
		name       string
		opts       devop.Options
		status     int
		reason     Reason
		noUserInfo bool
	}{
		{"provider error", devop.Options{Authorize: func(v url.Values) { v.Del("code"); v.Set("error", "access_denied") }}, 403, ReasonProviderError, true},
		{"iss mismatch", devop.Options{Authorize: func(v url.Values) { v.Set("iss", "https://evil.example") }}, 400, ReasonIssuerMismatch, true},
		{"iss missing though advertised", devop.Options{Authorize: func(v url.Values) { v.Del("iss") }}, 400, ReasonIssuerMismatch, true},
		{"state altered", devop.Options{Authorize: func(v url.Values) { v.Set("state", alter(v.Get("state"))) }}, 400, ReasonStateMismatch, true},
		{"state missing", devop.Options{Authorize: func(v url.Values) { v.Del("state") }}, 400, ReasonStateMismatch, true},
		{"nonce mismatch", devop.Options{IDToken: func(c, h map[string]any) { c["nonce"] = "012345678" }}, 400, ReasonInvalidIDToken, true},
		{"nonce missing", devop.Options{IDToken: func(c, h map[string]any) { delete(c, "nonce") }}, 400, ReasonInvalidIDToken, true},
		{"wrong aud", devop.Options{IDToken: func(c, h map[string]any) { c["aud"] = "https://example.com/" }}, 400, ReasonInvalidIDToken, true},
		{"extra aud", devop.Options{IDToken: func(c, h map[string]any) { c["aud"] = []any{c["aud"], "other-client"} }}, 400, ReasonInvalidIDToken, true},
		{"iss claim mismatch", devop.Options{IDToken: func(c, h map[string]any) { c["iss"] = "https://example.org/" }}, 400, ReasonInvalidIDToken, true},
		{"missing iat", devop.Options{IDToken: func(c, h map[string]any) { delete(c, "iat") }}, 400, ReasonInvalidIDToken, true},
		{"missing sub", devop.Options{IDToken: func(c, h map[string]any) { delete(c, "sub") }}, 400, ReasonInvalidIDToken, true},
		{"expired", devop.Options{IDToken: func(c, h map[string]any) {
			c["exp"] = time.Now().Add(-6 * time.Minute).Unix()
			c["iat"] = time.Now().Add(-time.Hour).Unix()
		}}, 400, ReasonInvalidIDToken, true},
		{"missing exp", devop.Options{IDToken: func(c, h map[string]any) { delete(c, "exp") }}, 400, ReasonInvalidIDToken, true},
		{"alg none", devop.Options{IDToken: func(c, h map[string]any) { h["alg"] = "none" }}, 400, ReasonInvalidIDToken, true},
		{"bad signature", devop.Options{TokenResponse: func(body map[string]any) {
			parts := strings.Split(body["id_token"].(string), ".")
			sig := []byte(parts[2])
			sig[5] ^= 1
			body["id_token"] = parts[0] + "." + parts[1] + "." + string(sig)
		}}, 400, ReasonInvalidIDToken, true},
		{"signed by a foreign key", devop.Options{TokenResponse: func(body map[string]any) {
			claims := map[string]any{}
			parts := strings.Split(body["id_token"].(string), ".")
			b, _ := base64.RawURLEncoding.DecodeString(parts[1])
			json.Unmarshal(b, &claims)
			body["id_token"] = foreign.SignWithForeignKey(claims)
		}}, 400, ReasonInvalidIDToken, true},
		{"no id_token", devop.Options{TokenResponse: func(body map[string]any) { delete(body, "id_token") }}, 400, ReasonInvalidIDToken, true},
		{"userinfo sub mismatch", devop.Options{UserInfo: func(c map[string]any) { c["sub"] = "foobar" }}, 502, ReasonUserInfo, false},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts, Config{})
			if status, body := e.attempt("/"); status != tc.status || !strings.Contains(body, string(tc.reason)) {
				t.Errorf("ended with %d %s, want %d with reason %s", status, body, tc.status, tc.reason)
			}
			if e.cookie("oidcrp") != nil {
				t.Error("a session cookie was set")
			}
			if e.handled.Load() != 0 {
				t.Error("the protected handler ran")
			}
			if s := e.op.Stats(); tc.noUserInfo && s.UserInfo != 0 {
				t.Errorf("userinfo was called after a rejected response: %+v", s)
			}
			if !strings.Contains(e.logs.String(), "reason="+string(tc.reason)) {
				t.Errorf("no log line with reason=%s:\n%s", tc.reason, e.logs)
			}
		})
	}
}

func TestReplayedCallbackRejected(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	hops := e.follow(e.get(e.app.URL+"/", html))
	var callback string
	for _, h := range hops {
		if h.Request.URL.Path == "/auth/callback" {
			callback = h.Request.URL.String()
		}
	}
	e.browser.Jar, _ = cookiejar.New(nil) // another browser replays the callback URL
	resp := e.get(callback, html)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || setCookieNamed(resp, "oidcrp") != nil {
		t.Fatalf("replayed callback: %d", resp.StatusCode)
	}
}

func TestDiscoveryIssuerMismatch(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{Discovery: func(d map[string]any) { d["issuer"] = "https://example.com" }}, Config{})
	resp := e.get(e.app.URL+"/", html)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" || !strings.Contains(string(body), "unavailable") {
		t.Fatalf("got %d %q %s, want 503 with Retry-After", resp.StatusCode, resp.Header.Get("Retry-After"), body)
	}
	if s := e.op.Stats(); s.Registration != 0 || s.Authorize != 0 {
		t.Errorf("the RP went on after a mismatched discovery: %+v", s)
	}
	err := e.rp.Ready(context.Background())
	if !errors.Is(err, ErrUnavailable) || !errors.Is(err, ErrIssuerMismatch) {
		t.Errorf("Ready: %v, want ErrUnavailable wrapping ErrIssuerMismatch", err)
	}
	if !strings.Contains(e.logs.String(), "does not match") {
		t.Errorf("mismatch not logged:\n%s", e.logs)
	}
}

func TestRegistrationFailures(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts devop.Options
		want string
	}{
		{"400", devop.Options{Registration: func(st *int, b map[string]any) {
			*st = 400
			clear(b)
			b["error"], b["error_description"] = "invalid_redirect_uri", "no thanks"
		}}, "invalid_redirect_uri"},
		{"401 without initial access token", devop.Options{InitialAccessToken: "let-me-in"}, "invalid_token"},
		{"500", devop.Options{Registration: func(st *int, b map[string]any) { *st = 500; clear(b) }}, "HTTP 500"},
		{"missing client_id", devop.Options{Registration: func(st *int, b map[string]any) { delete(b, "client_id") }}, "no client_id"},
		{"redirect_uris replaced", devop.Options{Registration: func(st *int, b map[string]any) {
			b["redirect_uris"] = []string{"https://evil.example/cb"}
		}}, "lack"},
		{"unsupported auth method", devop.Options{Registration: func(st *int, b map[string]any) {
			b["token_endpoint_auth_method"] = "tls_client_auth"
		}}, "unsupported token_endpoint_auth_method"},
		{"no registration endpoint", devop.Options{NoRegistration: true}, "no registration_endpoint"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts, Config{})
			resp := e.get(e.app.URL+"/", html)
			resp.Body.Close()
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") == "" {
				t.Fatalf("got %d, want 503 with Retry-After", resp.StatusCode)
			}
			err := e.rp.Ready(context.Background())
			if err == nil || !strings.Contains(err.Error(), tc.want) || !errors.Is(err, ErrUnavailable) {
				t.Errorf("Ready: %v, want an error mentioning %q", err, tc.want)
			}
			if tc.name == "400" {
				var re *RegistrationError
				if !errors.As(err, &re) || re.StatusCode != 400 || re.ErrorCode != "invalid_redirect_uri" || re.ErrorDescription != "no thanks" {
					t.Errorf("RegistrationError = %+v", re)
				}
			}
			if !strings.Contains(e.logs.String(), tc.want) {
				t.Errorf("failure not logged:\n%s", e.logs)
			}
		})
	}
}

func TestInitialAccessToken(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{InitialAccessToken: "let-me-in"}, Config{InitialAccessToken: "let-me-in"})
	if out := e.login("/"); out["sub"] != "demo-user" {
		t.Fatalf("login: %v", out)
	}
	if strings.Contains(e.logs.String(), "let-me-in") {
		t.Error("initial access token logged")
	}
}

func TestReplacedAuthMethodIsUsed(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"client_secret_post", "none", "client_secret_basic"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, devop.Options{ForceAuthMethod: method}, Config{})
			e.login("/")
			form, hdr := e.op.LastTokenRequest()
			basic := hdr.Get("Authorization") != ""
			switch method {
			case "client_secret_post":
				if basic || form.Get("client_secret") == "" {
					t.Errorf("post: header %v form has secret %v", basic, form.Has("client_secret"))
				}
			case "none":
				if basic || form.Has("client_secret") || form.Get("client_id") == "" {
					t.Errorf("none: header %v form %v", basic, form)
				}
			default:
				if !basic || form.Has("client_secret") {
					t.Errorf("basic: header %v form %v", basic, form)
				}
			}
		})
	}
}

func TestConcurrentFirstRequestsRegisterOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	var wg sync.WaitGroup
	codes := make([]int, 100)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req, _ := http.NewRequest(http.MethodGet, e.app.URL+"/", nil)
			req.Header.Set("Accept", html)
			resp, err := e.browser.Do(req)
			if err == nil {
				codes[i] = resp.StatusCode
				resp.Body.Close()
			}
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusFound {
			t.Fatalf("request %d: %d", i, c)
		}
	}
	if s := e.op.Stats(); s.Registration != 1 || s.Discovery != 1 {
		t.Fatalf("100 first requests made %d registrations and %d discoveries", s.Registration, s.Discovery)
	}
}

func TestRestartWithFileStoreReusesRegistration(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "state", "creds.json")
	e := newEnv(t, devop.Options{}, Config{Store: NewFileStore(path)})
	e.login("/")
	// A new process: new RP, same file. The browser's session survives too,
	// since the session keys live in the store.
	e.rp = e.newRP(Config{Store: NewFileStore(path)})
	e.app.Config.Handler = e.handler(e.rp)
	resp := e.get(e.app.URL+"/", html)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Errorf("session did not survive the restart: %d", resp.StatusCode)
	}
	e.browser.Jar, _ = cookiejar.New(nil)
	e.login("/")
	if s := e.op.Stats(); s.Registration != 1 {
		t.Fatalf("restart registered again: %d registrations", s.Registration)
	}
	fi, err := os.Stat(path)
	if err != nil || fi.Mode().Perm() != 0o600 {
		t.Fatalf("credentials file: %v %v", fi.Mode(), err)
	}
	raw, _ := os.ReadFile(path)
	if len(raw) == 0 {
		t.Fatal("empty credentials file")
	}
}

func TestCorruptStoreFile(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "creds.json")
	garbage := []byte("{not json")
	os.WriteFile(path, garbage, 0o600)
	e := newEnv(t, devop.Options{}, Config{Store: NewFileStore(path)})
	resp := e.get(e.app.URL+"/", html)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || !strings.Contains(string(body), "unavailable") {
		t.Fatalf("corrupt store: %d %s, want 503", resp.StatusCode, body)
	}
	if s := e.op.Stats(); s.Registration != 0 {
		t.Error("registered despite an unreadable store (the credentials could not be kept)")
	}
	if now, _ := os.ReadFile(path); !bytes.Equal(now, garbage) {
		t.Error("corrupt store file was overwritten")
	}
	if !strings.Contains(e.logs.String(), path) || !strings.Contains(e.logs.String(), "corrupt") {
		t.Errorf("log does not name the file and the cause:\n%s", e.logs)
	}
}

func TestProviderDownThenUp(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	up := e.opSrv.Config.Handler
	var down atomic.Bool
	down.Store(true)
	e.opSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			http.Error(w, "maintenance", http.StatusBadGateway)
			return
		}
		up.ServeHTTP(w, r)
	})
	resp := e.get(e.app.URL+"/", html)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Retry-After") != "1" {
		t.Fatalf("provider down: %d Retry-After %q", resp.StatusCode, resp.Header.Get("Retry-After"))
	}
	down.Store(false)
	// Within the backoff the failure is answered without a new attempt.
	resp = e.get(e.app.URL+"/", "application/json")
	resp.Body.Close()
	resp = e.get(e.app.URL+"/", html)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("within backoff: %d", resp.StatusCode)
	}
	e.clock.Advance(2 * time.Second)
	if out := e.login("/"); out["sub"] != "demo-user" {
		t.Fatalf("after recovery: %v", out)
	}
	if !strings.Contains(e.logs.String(), "cannot start login") {
		t.Errorf("outage not logged:\n%s", e.logs)
	}
}

func TestLogout(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	e.login("/")
	old := e.cookie("oidcrp")
	if status := e.replay("/", old); status != http.StatusOK {
		t.Fatalf("the session cookie, replayed before logout: %d, want 200", status)
	}

	// GET shows a button only; it does not log out.
	resp := e.get(e.app.URL+"/logout", html)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.Contains(string(body), `method="post"`) || e.cookie("oidcrp") == nil {
		t.Fatalf("GET /logout: %d %s", resp.StatusCode, body)
	}
	// A cross-site POST is refused.
	req, _ := http.NewRequest(http.MethodPost, e.app.URL+"/logout", nil)
	req.Header.Set("Origin", "https://evil.example")
	resp, _ = e.browser.Do(req)
	resp.Body.Close()
	if resp.StatusCode != http.StatusForbidden || e.cookie("oidcrp") == nil {
		t.Fatalf("cross-site logout: %d", resp.StatusCode)
	}

	req, _ = http.NewRequest(http.MethodPost, e.app.URL+"/logout", nil)
	req.Header.Set("Origin", e.app.URL)
	resp, _ = e.browser.Do(req)
	resp.Body.Close()
	if e.cookie("oidcrp") != nil {
		t.Error("session cookie kept after logout")
	}
	end, _ := url.Parse(resp.Header.Get("Location"))
	q := end.Query()
	if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(end.String(), e.op.Issuer()) ||
		q.Get("id_token_hint") == "" || q.Get("post_logout_redirect_uri") != e.app.URL+"/logout" || q.Get("state") == "" {
		t.Fatalf("logout redirect %d %s", resp.StatusCode, end)
	}
	hops := e.follow(resp)
	last := hops[len(hops)-1]
	body, _ = io.ReadAll(last.Body)
	if last.Request.URL.Path != "/logout" || !strings.Contains(string(body), "signed out") {
		t.Fatalf("after provider logout: %s %s", last.Request.URL, body)
	}
	if s := e.op.Stats(); s.EndSession != 1 {
		t.Errorf("end_session calls: %d", s.EndSession)
	}
	if strings.Contains(e.logs.String(), "unknown state") {
		t.Error("post-logout state was not recognised")
	}

	// The old cookie, replayed, no longer authenticates (documented: in this process).
	if status := e.replay("/", old); status != http.StatusUnauthorized {
		t.Errorf("replayed session cookie after logout: %d, want 401", status)
	}
}

func TestTamperedSessionCookieMeansLoggedOut(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	e.login("/")
	good := e.cookie("oidcrp")
	if status := e.replay("/", good); status != http.StatusOK {
		t.Fatalf("untampered cookie: %d, want 200", status)
	}
	for name, value := range map[string]string{
		"flipped":   good.Value[:20] + string(good.Value[20]^1) + good.Value[21:],
		"truncated": good.Value[:30],
		"garbage":   "%%%not-base64",
		"empty":     "",
	} {
		if status := e.replay("/", &http.Cookie{Name: good.Name, Value: value}); status != http.StatusUnauthorized {
			t.Errorf("%s cookie: %d, want 401", name, status)
		}
	}
}

func TestSessionExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute}, Config{})
	e.login("/")
	e.clock.Advance(11 * time.Minute)
	resp := e.get(e.app.URL+"/", "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("expired session still accepted (cached): %d", resp.StatusCode)
	}
}

// TestSecretRenewedBeforeExpiry: the provider's secrets live 4 minutes,
// less than RenewBefore (5 minutes by default), so they are renewed when
// half their lifetime is left: not by a login 1 minute after registration,
// but by one 2½ minutes after. Every clock involved (the relying party's,
// its registrar's and the provider's) is the fake one.
func TestSecretRenewedBeforeExpiry(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{SecretLifetime: 4 * time.Minute}, Config{})
	e.login("/")
	first := e.op.Clients()[0]

	e.clock.Advance(time.Minute)
	e.browser.Jar, _ = cookiejar.New(nil)
	e.login("/")
	if s := e.op.Stats(); s.Registration != 1 || s.RegistrationRead+s.RegistrationUpdate != 0 {
		t.Fatalf("stats %+v after 1 of 4 minutes: want the secret used as it is", s)
	}

	e.clock.Advance(90 * time.Second)
	e.browser.Jar, _ = cookiejar.New(nil)
	e.login("/")
	s := e.op.Stats()
	if s.Registration != 1 || s.RegistrationRead+s.RegistrationUpdate == 0 {
		t.Fatalf("renewal stats %+v: want one registration and an RFC 7592 renewal", s)
	}
	if got := e.op.Clients()[0]; got.ID != first.ID || got.Secret == first.Secret || !got.SecretExpiresAt.After(first.SecretExpiresAt) {
		t.Errorf("secret not renewed: %s\n%s", got.ID, e.logs)
	}
}

func TestConfigDriftUpdatesRegistration(t *testing.T) {
	t.Parallel()
	store := new(MemoryStore)
	e := newEnv(t, devop.Options{}, Config{Store: store})
	e.login("/")
	e.rp = e.newRP(Config{Store: store, Metadata: ClientMetadata{ClientName: "renamed"}})
	e.app.Config.Handler = e.handler(e.rp)
	e.browser.Jar, _ = cookiejar.New(nil)
	e.login("/")
	s := e.op.Stats()
	if s.Registration != 1 || s.RegistrationUpdate != 1 {
		t.Fatalf("drift: %+v, want one registration and one update", s)
	}
	if c := e.op.Clients(); len(c) != 1 || c[0].Metadata["client_name"] != "renamed" {
		t.Errorf("clients after drift: %+v", c)
	}
}

func TestForgottenClientRegistersAgainAndReplaysLogin(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	e.login("/")
	e.browser.Jar, _ = cookiejar.New(nil)
	// The provider forgets the client between its authorization answer and
	// the token request: the token endpoint says invalid_client.
	resp := e.get(e.app.URL+"/again", html)
	resp.Body.Close()
	resp = e.get(resp.Header.Get("Location"), html) // provider issues a code
	resp.Body.Close()
	e.op.ForgetClients()
	hops := e.follow(e.get(resp.Header.Get("Location"), html))
	last := hops[len(hops)-1]
	body, _ := io.ReadAll(last.Body)
	last.Body.Close()
	if last.StatusCode != 200 || !strings.Contains(string(body), `"path":"/again"`) {
		t.Fatalf("after replay: %d %s\n%s", last.StatusCode, body, e.logs)
	}
	if s := e.op.Stats(); s.Registration != 2 {
		t.Errorf("registrations: %d, want 2", s.Registration)
	}
}

func TestForgottenClientDetectedOnNextLogin(t *testing.T) {
	t.Parallel()
	// The provider forgot the client before the authorization request: it
	// shows its own error page, the browser never comes back. The next login
	// of that browser checks the registration and registers anew.
	e := newEnv(t, devop.Options{}, Config{})
	e.login("/")
	e.browser.Jar, _ = cookiejar.New(nil)
	e.op.ForgetClients()
	resp := e.get(e.app.URL+"/", html)
	resp.Body.Close()
	resp = e.get(resp.Header.Get("Location"), html)
	resp.Body.Close()
	if resp.StatusCode < 400 {
		t.Fatalf("provider accepted a forgotten client: %d", resp.StatusCode)
	}
	e.clock.Advance(verifyEvery)
	if out := e.login("/"); out["sub"] != "demo-user" {
		t.Fatalf("second attempt: %v", out)
	}
	if s := e.op.Stats(); s.Registration != 2 {
		t.Errorf("registrations: %d, want 2", s.Registration)
	}
}

func TestCredentialsRedacted(t *testing.T) {
	t.Parallel()
	c := credentials{ClientID: "id", ClientSecret: "s3cr3t-value", RegistrationAccessToken: "rat-value"}
	b, _ := json.Marshal(c)
	for _, out := range []string{fmt.Sprint(c), fmt.Sprintf("%+v", c), fmt.Sprintf("%#v", c), string(b), fmt.Sprint(&c)} {
		if strings.Contains(out, "s3cr3t") || strings.Contains(out, "rat-value") {
			t.Errorf("secret shown: %s", out)
		}
	}
	var buf bytes.Buffer
	slog.New(slog.NewJSONHandler(&buf, nil)).Info("x", "creds", c, "secret", c.ClientSecret)
	if strings.Contains(buf.String(), "s3cr3t") {
		t.Errorf("secret logged: %s", buf.String())
	}
	enc, _ := encodeCredentials(&c)
	back, err := decodeCredentials(enc)
	if err != nil || back.ClientSecret != c.ClientSecret || back.RegistrationAccessToken != c.RegistrationAccessToken {
		t.Errorf("store encoding lost secrets: %v", err)
	}
}

func TestClientMetadataJSON(t *testing.T) {
	t.Parallel()
	in := `{"redirect_uris":["https://a/cb"],"client_name":"x","client_name#ja":"エックス","default_max_age":60,
		"require_auth_time":true,"jwks":{"keys":[]},"client_id":"abc","client_secret":"s","vendor_ext":{"a":1}}`
	var m metadataJSON // the wire form of ClientMetadata
	if err := json.Unmarshal([]byte(in), &m); err != nil {
		t.Fatal(err)
	}
	if m.ClientName != "x" || m.DefaultMaxAge != 60 || !m.RequireAuthTime || m.Extra["client_name#ja"] != "エックス" {
		t.Errorf("decoded %+v", m)
	}
	if _, ok := m.Extra["client_id"]; ok {
		t.Error("client_id kept as metadata")
	}
	m.Extra["client_name"] = "must not override"
	out, _ := json.Marshal(m)
	var back map[string]any
	json.Unmarshal(out, &back)
	if back["client_name"] != "x" || back["client_name#ja"] != "エックス" || back["vendor_ext"] == nil || back["jwks"] == nil {
		t.Errorf("encoded %s", out)
	}
}

func TestNewValidates(t *testing.T) {
	t.Parallel()
	good := Config{Issuer: "https://op.example", RedirectURL: "https://app.example/cb"}
	for name, mod := range map[string]func(*Config){
		"no issuer":        func(c *Config) { c.Issuer = "" },
		"relative issuer":  func(c *Config) { c.Issuer = "op.example" },
		"issuer query":     func(c *Config) { c.Issuer = "https://op.example?x=1" },
		"http issuer":      func(c *Config) { c.Issuer = "http://op.example" },
		"no redirect":      func(c *Config) { c.RedirectURL = "" },
		"redirect frag":    func(c *Config) { c.RedirectURL = "https://app.example/cb#x" },
		"short key":        func(c *Config) { c.SessionKeys = []Secret{"short"} },
		"bad auth method":  func(c *Config) { c.Metadata.TokenEndpointAuthMethod = "tls_client_auth" },
		"pkjwt by hand":    func(c *Config) { c.ClientID, c.Metadata.TokenEndpointAuthMethod = "x", "private_key_jwt" },
		"bad signing key":  func(c *Config) { c.SigningKey = ed25519.NewKeyFromSeed(make([]byte, 32)) },
		"jwks at callback": func(c *Config) { c.JWKSURL = "https://app.example/cb" },
		"logout=callback":  func(c *Config) { c.LogoutPath = "/cb" },
		"relative logout":  func(c *Config) { c.LogoutPath = "logout" },
		"relative postout": func(c *Config) { c.PostLogoutRedirectURL = "/bye" },
	} {
		c := good
		mod(&c)
		if _, err := New(c); err == nil || !strings.HasPrefix(err.Error(), "oidcrp: ") {
			t.Errorf("%s: New returned %v", name, err)
		}
	}
	if _, err := New(good); err != nil {
		t.Errorf("good config: %v", err)
	}
}

func TestSafeReturnTo(t *testing.T) {
	t.Parallel()
	for in, want := range map[string]string{
		"/a/b?c=d":             "/a/b?c=d",
		"/":                    "/",
		"":                     "/",
		"//evil.example/":      "/",
		"/\\evil.example":      "/",
		"\\\\evil.example":     "/",
		"https://evil.example": "/",
		"javascript:alert(1)":  "/",
		"/%2F%2Fevil.example":  "/",
		"/a\r\nSet-Cookie: x":  "/",
		"evil.example/a":       "/",
		"/a/../b":              "/a/../b",
	} {
		if got := safeReturnTo(in); got != want {
			t.Errorf("safeReturnTo(%q) = %q, want %q", in, got, want)
		}
	}
}

func FuzzSafeReturnTo(f *testing.F) {
	for _, s := range []string{"/", "//x", "/\\x", "https://x", "/a?b#c", "/%2f/x", "/\t/x"} {
		f.Add(s)
	}
	base, _ := url.Parse("https://app.example/start")
	f.Fuzz(func(t *testing.T, in string) {
		out := safeReturnTo(in)
		if out == "/" {
			return
		}
		if out != in {
			t.Fatalf("rewrote %q to %q", in, out)
		}
		// A browser resolving the redirect must stay on the same origin.
		u, err := base.Parse(strings.ReplaceAll(out, "\\", "/"))
		if err != nil || u.Host != "app.example" || u.Scheme != "https" {
			t.Fatalf("%q leaves the origin: %v", in, u)
		}
	})
}

// FuzzCallback sends arbitrary query strings to the callback, with and
// without a login in progress: the answer is never a session and never a
// server error other than the provider being unavailable.
func FuzzCallback(f *testing.F) {
	f.Add("state=abc&code=def", false)
	f.Add("error=access_denied&state=x", true)
	f.Add("code=x&state=%00&iss=%ff", true)
	f.Add("state="+strings.Repeat("A", 43)+"&code=1", true)
	opts := devop.Options{AutoLogin: true, SigningKey: providerKey(f)}
	op := devop.New(opts)
	opSrv := newTLSServer(op)
	defer opSrv.Close()
	op.SetIssuer(opSrv.URL)
	rp, err := New(Config{Issuer: op.Issuer(), RedirectURL: "https://app.example/cb", HTTPClient: opSrv.Client(),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		f.Fatal(err)
	}
	// A real login cookie to pair with fuzzed parameters.
	start := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "https://app.example/", nil)
	req.Header.Set("Accept", html)
	rp.Require(http.NotFoundHandler()).ServeHTTP(start, req)
	cookies := start.Result().Cookies()
	if start.Code != http.StatusFound || len(cookies) == 0 || !strings.HasPrefix(cookies[0].Name, hostPrefix+flowCookiePrefix) {
		f.Fatalf("starting the login to pair with fuzzed parameters: %d, cookies %v", start.Code, cookies)
	}
	f.Fuzz(func(t *testing.T, query string, withCookie bool) {
		req := httptest.NewRequest(http.MethodGet, "https://app.example/cb", nil)
		req.URL.RawQuery = query
		if withCookie {
			for _, c := range cookies {
				req.AddCookie(c)
			}
		}
		w := httptest.NewRecorder()
		rp.ServeHTTP(w, req)
		for _, c := range w.Result().Cookies() {
			if c.Name == rp.cfg.SessionName && c.MaxAge >= 0 {
				t.Fatalf("session issued for %q", query)
			}
		}
		if w.Code >= 500 && w.Code != http.StatusBadGateway && w.Code != http.StatusServiceUnavailable {
			t.Fatalf("%q: %d", query, w.Code)
		}
	})
}

// TestRotatedRegistrationTokenPersisted restarts the application on a
// provider that rotates the registration access token on every RFC 7592
// read: the token the provider now holds is the one stored.
func TestRotatedRegistrationTokenPersisted(t *testing.T) {
	t.Parallel()
	store := new(MemoryStore)
	e := newEnv(t, devop.Options{RotateRegistrationToken: true}, Config{Store: store})
	e.login("/")
	for i := 0; i < 2; i++ { // two restarts, two reads
		e.rp = e.newRP(Config{Store: store})
		e.app.Config.Handler = e.handler(e.rp)
		e.browser.Jar, _ = cookiejar.New(nil)
		e.login("/")
	}
	s := e.op.Stats()
	if s.Registration != 1 || s.RegistrationRead != 2 {
		t.Fatalf("stats %+v: want 1 registration and 2 reads", s)
	}
	b, err := store.Load(context.Background(), e.rp.cfg.StoreKey)
	if err != nil {
		t.Fatal(err)
	}
	stored, err := decodeCredentials(b)
	if err != nil {
		t.Fatal(err)
	}
	if got := e.op.Clients()[0].RegistrationAccessToken; string(stored.RegistrationAccessToken) != got {
		t.Error("the rotated registration access token was not stored")
	}
}

// TestSessionCookieSize logs in with the fixture claim set (sub, iss, email,
// name, 10 groups, exp) and checks the session cookie stays within 2 KB.
func TestSessionCookieSize(t *testing.T) {
	t.Parallel()
	claims := benchClaims()
	delete(claims, "exp")
	delete(claims, "iss")
	e := newEnv(t, devop.Options{Claims: claims}, Config{})
	e.login("/")
	c := e.cookie("oidcrp")
	if c == nil {
		t.Fatal("no session cookie")
	}
	if n := len(c.Name) + 1 + len(c.Value); n > 2048 {
		t.Errorf("session cookie is %d bytes, want ≤ 2048", n)
	}
	t.Logf("session cookie: %d bytes", len(c.Value))
}

// TestColdStartThousandRequests sends 1,000 concurrent first requests: one
// discovery and one registration serve them all.
func TestColdStartThousandRequests(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	h := e.app.Config.Handler
	var wg sync.WaitGroup
	var redirected atomic.Int32
	for range 1000 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodGet, e.app.URL+"/", nil)
			req.Header.Set("Accept", html)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code == http.StatusFound {
				redirected.Add(1)
			}
		}()
	}
	wg.Wait()
	if s := e.op.Stats(); s.Discovery != 1 || s.Registration != 1 || redirected.Load() != 1000 {
		t.Fatalf("1,000 first requests: %d discoveries, %d registrations, %d redirects", s.Discovery, s.Registration, redirected.Load())
	}
}

func TestClaimFilterAndOversizedSessions(t *testing.T) {
	t.Parallel()
	big := map[string]any{"sub": "demo-user", "name": "Big", "blob": strings.Repeat("x", 6000), "groups": []any{"a", "b"}}

	t.Run("filter", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, devop.Options{Claims: big}, Config{ClaimFilter: func(c map[string]any) { delete(c, "blob") }})
		out := e.login("/")
		claims := out["claims"].(map[string]any)
		if _, ok := claims["blob"]; ok || claims["name"] != "Big" || claims["sub"] != "demo-user" {
			t.Errorf("claims after filter: %v", claims)
		}
	})
	t.Run("too large without a filter", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, devop.Options{Claims: big}, Config{})
		if status, _ := e.attempt("/"); status != http.StatusInternalServerError || e.cookie("oidcrp") != nil {
			t.Errorf("oversized session: %d", status)
		}
		if !strings.Contains(e.logs.String(), "ClaimFilter") {
			t.Errorf("the log does not say what to do:\n%s", e.logs)
		}
	})
	t.Run("server-side store", func(t *testing.T) {
		t.Parallel()
		store := sessions.NewFilesystemStore(t.TempDir(), []byte("0123456789abcdef0123456789abcdef"))
		store.MaxLength(0)
		e := newEnv(t, devop.Options{Claims: big}, Config{SessionStore: store})
		out := e.login("/")
		if claims := out["claims"].(map[string]any); claims["blob"] != big["blob"] {
			t.Fatalf("server-side session lost claims")
		}
		if c := e.cookie("oidcrp"); c == nil || len(c.Value) > 1024 {
			t.Errorf("server-side session cookie: %v", c)
		}
		// Logout deletes the server-side session: the old cookie no longer works.
		old := e.cookie("oidcrp")
		if status := e.replay("/", old); status != http.StatusOK {
			t.Fatalf("server-side session cookie, replayed before logout: %d, want 200", status)
		}
		e.postLogout()
		if status := e.replay("/", old); status != http.StatusUnauthorized {
			t.Errorf("server-side session replayed after logout: %d", status)
		}
	})
}

func TestCookieValueMatchesNetHTTP(t *testing.T) {
	t.Parallel()
	for _, header := range []string{
		"oidcrp=abc", "a=1; oidcrp=abc; b=2", "oidcrpx=no; oidcrp=yes", "xoidcrp=no", "oidcrp=", " oidcrp=v ;x=y",
		"oidcrp=first; oidcrp=second", "", "oidcrp", "a=b;;oidcrp=c",
	} {
		req := httptest.NewRequest(http.MethodGet, "/", nil)
		req.Header.Set("Cookie", header)
		want := ""
		if c, err := req.Cookie("oidcrp"); err == nil {
			want = c.Value
		}
		if got := cookieValue(req, "oidcrp"); got != want {
			t.Errorf("Cookie %q: %q, net/http says %q", header, got, want)
		}
	}
}

// TestWarmCallbackMakesOneRequest: once discovery, keys and registration are
// warm, a callback costs exactly one request to the provider (the token
// exchange), plus userinfo unless skipped.
func TestWarmCallbackMakesOneRequest(t *testing.T) {
	t.Parallel()
	for _, skip := range []bool{true, false} {
		e := newEnv(t, devop.Options{}, Config{SkipUserInfo: skip})
		e.login("/")
		before := e.op.Stats()
		e.browser.Jar, _ = cookiejar.New(nil)
		e.login("/")
		after := e.op.Stats()
		calls := (after.Token - before.Token) + (after.UserInfo - before.UserInfo) + (after.JWKS - before.JWKS) +
			(after.Discovery - before.Discovery) + (after.Registration - before.Registration) + (after.RegistrationRead - before.RegistrationRead)
		want := 2
		if skip {
			want = 1
		}
		if calls != want || after.Token-before.Token != 1 {
			t.Errorf("SkipUserInfo=%v: a warm login made %d provider requests (%+v → %+v), want %d", skip, calls, before, after, want)
		}
	}
}

func TestPendingLoginCookiesBounded(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	for i := range 10 {
		resp := e.get(fmt.Sprintf("%s/page/%d", e.app.URL, i), html)
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("attempt %d: %d", i, resp.StatusCode)
		}
		auth, _ := url.Parse(resp.Header.Get("Location"))
		if e.cookie(flowCookieName(auth.Query().Get("state"))) == nil {
			t.Fatalf("attempt %d left no login cookie of its own", i)
		}
		n := 0
		u, _ := url.Parse(e.app.URL)
		for _, c := range e.browser.Jar.Cookies(u) {
			if strings.Contains(c.Name, flowCookiePrefix) {
				n++
			}
		}
		if n > maxPendingLogins {
			t.Fatalf("after %d abandoned attempts the browser holds %d login cookies", i+1, n)
		}
	}
	// The last attempt still completes.
	if out := e.login("/final"); out["path"] != "/final" {
		t.Fatalf("login after many attempts: %v", out)
	}
}

// TestServerSideSessionNotFixated: a session identifier planted in the
// browser is not reused for the session a login creates.
func TestServerSideSessionNotFixated(t *testing.T) {
	t.Parallel()
	store := sessions.NewFilesystemStore(t.TempDir(), []byte("0123456789abcdef0123456789abcdef"))
	e := newEnv(t, devop.Options{}, Config{SessionStore: store})
	e.login("/") // the attacker's own session…
	planted := e.cookie("oidcrp")
	e.postLogout()
	// …whose cookie is planted in the victim's browser, who then logs in.
	e.browser.Jar, _ = cookiejar.New(nil)
	u, _ := url.Parse(e.app.URL)
	e.browser.Jar.SetCookies(u, []*http.Cookie{{Name: planted.Name, Value: planted.Value, Path: "/"}})
	e.login("/")
	if status := e.replay("/api", e.cookie("oidcrp")); status != http.StatusOK {
		t.Fatalf("the victim's own session cookie: %d, want 200", status)
	}
	if status := e.replay("/api", planted); status != http.StatusUnauthorized {
		t.Fatalf("the planted cookie opens the victim's session: %d", status)
	}
}

func TestLoginHandler(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	if out := e.login("/signin?return_to=/reports%3Fq%3D1"); out["path"] != "/reports?q=1" {
		t.Fatalf("LoginHandler returned to %v", out["path"])
	}
	e.browser.Jar, _ = cookiejar.New(nil)
	if out := e.login("/signin?return_to=//evil.example/"); out["path"] != "/" {
		t.Fatalf("LoginHandler followed an off-site return_to: %v", out["path"])
	}
}
