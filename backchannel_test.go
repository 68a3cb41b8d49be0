package oidcrp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// opSID is the provider session the ID tokens of newBackchannelEnv name.
const opSID = "op-session-1"

// newBackchannelEnv is newEnv with a provider that advertises back-channel
// logout with sid, and ID tokens carrying the provider session opSID.
func newBackchannelEnv(t *testing.T, cfg Config) *testEnv {
	t.Helper()
	return newEnv(t, devop.Options{
		Discovery: func(doc map[string]any) {
			doc["backchannel_logout_supported"] = true
			doc["backchannel_logout_session_supported"] = true
			doc["frontchannel_logout_supported"] = true // back-channel wins
		},
		IDToken: func(claims, _ map[string]any) { claims["sid"] = opSID },
	}, cfg)
}

// signedIn signs the browser in and returns its session cookie, checked
// alive.
func (e *testEnv) signedIn() *http.Cookie {
	e.t.Helper()
	e.login("/")
	c := e.cookie(e.rp.cfg.SessionName)
	if c == nil {
		e.t.Fatal("no session cookie after login")
	}
	if got := e.replay("/", c); got != http.StatusOK {
		e.t.Fatalf("fresh session: status %d, want 200", got)
	}
	return c
}

// logoutClaims are the claims of a valid logout token for the session
// signedIn made.
func (e *testEnv) logoutClaims() map[string]any {
	now := e.clock.Now()
	return map[string]any{
		"iss":    e.op.Issuer(),
		"aud":    e.rp.clientID(),
		"iat":    now.Unix(),
		"exp":    now.Add(2 * time.Minute).Unix(),
		"jti":    randomString(),
		"events": map[string]any{backchannelLogoutEvent: map[string]any{}},
		"sid":    opSID,
		"sub":    "demo-user",
	}
}

var logoutJWT = map[string]any{"typ": "logout+jwt"}

// postLogoutToken POSTs a back-channel logout request with the given form
// and content type, as the provider would.
func (e *testEnv) postBackchannel(form url.Values, contentType string) (int, http.Header, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.app.URL+"/backchannel-logout", strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", contentType)
	resp, err := (&http.Client{Transport: e.browser.Transport}).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, resp.Header, string(b)
}

func (e *testEnv) postLogoutToken(tok string) (int, http.Header, string) {
	e.t.Helper()
	return e.postBackchannel(url.Values{"logout_token": {tok}}, "application/x-www-form-urlencoded")
}

// wantRefused checks a 400 with the JSON error of §2.8.
func wantRefused(t *testing.T, status int, h http.Header, body string) {
	t.Helper()
	if status != http.StatusBadRequest {
		t.Fatalf("status %d, want 400: %s", status, body)
	}
	var eb map[string]string
	if err := json.Unmarshal([]byte(body), &eb); err != nil || eb["error"] != "invalid_request" || eb["error_description"] == "" {
		t.Errorf("error body %q, want JSON with error invalid_request and a description", body)
	}
	if h.Get("Cache-Control") != "no-store" || !strings.HasPrefix(h.Get("Content-Type"), "application/json") {
		t.Errorf("headers %v", h)
	}
}

func TestBackchannelLogoutRegistered(t *testing.T) {
	t.Parallel()
	e := newBackchannelEnv(t, Config{})
	e.signedIn()
	cl := e.op.Clients()
	if len(cl) != 1 {
		t.Fatalf("%d clients", len(cl))
	}
	m := cl[0].Metadata
	if m["backchannel_logout_uri"] != e.app.URL+"/backchannel-logout" || m["backchannel_logout_session_required"] != true {
		t.Errorf("registered back-channel logout %v %v", m["backchannel_logout_uri"], m["backchannel_logout_session_required"])
	}
	if _, ok := m["frontchannel_logout_uri"]; ok {
		t.Errorf("front-channel logout registered too, though the provider does back-channel")
	}

	// Without provider support nothing is registered.
	e2 := newEnv(t, devop.Options{}, Config{})
	e2.signedIn()
	for _, k := range []string{"backchannel_logout_uri", "frontchannel_logout_uri"} {
		if _, ok := e2.op.Clients()[0].Metadata[k]; ok {
			t.Errorf("%s registered for a provider without support", k)
		}
	}
}

func TestBackchannelLogoutWithSid(t *testing.T) {
	t.Parallel()
	e := newBackchannelEnv(t, Config{})
	c := e.signedIn()
	status, h, body := e.postLogoutToken(e.op.SignJWT(e.logoutClaims(), logoutJWT))
	if status != http.StatusOK || h.Get("Cache-Control") != "no-store" {
		t.Fatalf("valid logout token: %d %v %s\nlogs:\n%s", status, h, body, e.logs)
	}
	if got := e.replay("/", c); got != http.StatusUnauthorized {
		t.Errorf("session after back-channel logout: status %d, want 401", got)
	}
}

func TestBackchannelLogoutWithSubOnly(t *testing.T) {
	t.Parallel()
	e := newBackchannelEnv(t, Config{})
	c := e.signedIn()
	claims := e.logoutClaims()
	delete(claims, "sid")
	// Untyped logout tokens are tolerated (§2.4).
	if status, _, body := e.postLogoutToken(e.op.SignJWT(claims, map[string]any{"typ": nil})); status != http.StatusOK {
		t.Fatalf("sub-only logout token: %d %s", status, body)
	}
	if got := e.replay("/", c); got != http.StatusUnauthorized {
		t.Errorf("session after sub-only back-channel logout: status %d, want 401", got)
	}
}

func TestBackchannelLogoutOtherSessionStays(t *testing.T) {
	t.Parallel()
	e := newBackchannelEnv(t, Config{})
	c := e.signedIn()
	claims := e.logoutClaims()
	claims["sid"] = "another-provider-session"
	claims["aud"] = []string{"someone-else", e.rp.clientID()} // aud contains the client_id
	if status, _, body := e.postLogoutToken(e.op.SignJWT(claims, map[string]any{"typ": "application/logout+jwt"})); status != http.StatusOK {
		t.Fatalf("logout token for another session: %d %s", status, body)
	}
	if got := e.replay("/", c); got != http.StatusOK {
		t.Errorf("a logout of another provider session ended this one: status %d", got)
	}
}

// TestBackchannelLogoutHostileTokens sends every kind of invalid logout
// token of Back-Channel Logout 1.0 §2.4 and §2.6: each gets 400 and the
// session stays alive.
func TestBackchannelLogoutHostileTokens(t *testing.T) {
	t.Parallel()
	e := newBackchannelEnv(t, Config{})
	c := e.signedIn()
	op := e.op
	with := func(edit func(map[string]any)) map[string]any {
		claims := e.logoutClaims()
		edit(claims)
		return claims
	}
	valid := func() string { return op.SignJWT(e.logoutClaims(), logoutJWT) }
	now := e.clock.Now()
	cases := []struct {
		name string
		tok  func() string
	}{
		{"unsigned (alg none)", func() string { return op.SignJWT(e.logoutClaims(), map[string]any{"alg": "none", "typ": "logout+jwt"}) }},
		{"HS256 keyed with the public key (wrong alg)", func() string {
			return op.SignJWT(e.logoutClaims(), map[string]any{"alg": "HS256", "typ": "logout+jwt"})
		}},
		{"signature of other claims", func() string {
			other := strings.Split(op.SignJWT(with(func(m map[string]any) { m["sid"] = "x" }), logoutJWT), ".")
			mine := strings.Split(valid(), ".")
			return mine[0] + "." + mine[1] + "." + other[2]
		}},
		{"encrypted (JWE)", func() string { return "eyJhbGciOiJSU0EtT0FFUCIsImVuYyI6IkEyNTZHQ00ifQ.a.b.c.d" }},
		{"not a JWT", func() string { return "garbage" }},
		{"wrong iss", func() string {
			return op.SignJWT(with(func(m map[string]any) { m["iss"] = "https://evil.example" }), logoutJWT)
		}},
		{"no iss", func() string { return op.SignJWT(with(func(m map[string]any) { delete(m, "iss") }), logoutJWT) }},
		{"wrong aud", func() string {
			return op.SignJWT(with(func(m map[string]any) { m["aud"] = "another-client" }), logoutJWT)
		}},
		{"aud without the client", func() string {
			return op.SignJWT(with(func(m map[string]any) { m["aud"] = []string{"a", "b"} }), logoutJWT)
		}},
		{"no aud", func() string { return op.SignJWT(with(func(m map[string]any) { delete(m, "aud") }), logoutJWT) }},
		{"no iat", func() string { return op.SignJWT(with(func(m map[string]any) { delete(m, "iat") }), logoutJWT) }},
		{"iat in the future", func() string {
			return op.SignJWT(with(func(m map[string]any) { m["iat"] = now.Add(time.Hour).Unix(); m["exp"] = now.Add(2 * time.Hour).Unix() }), logoutJWT)
		}},
		{"iat long ago", func() string {
			return op.SignJWT(with(func(m map[string]any) { m["iat"] = now.Add(-3 * time.Hour).Unix(); delete(m, "exp") }), logoutJWT)
		}},
		{"expired", func() string {
			return op.SignJWT(with(func(m map[string]any) {
				m["iat"] = now.Add(-time.Minute).Unix()
				m["exp"] = now.Add(-time.Second).Unix()
			}), logoutJWT)
		}},
		{"no jti", func() string { return op.SignJWT(with(func(m map[string]any) { delete(m, "jti") }), logoutJWT) }},
		{"empty jti", func() string { return op.SignJWT(with(func(m map[string]any) { m["jti"] = "" }), logoutJWT) }},
		{"no events", func() string { return op.SignJWT(with(func(m map[string]any) { delete(m, "events") }), logoutJWT) }},
		{"wrong event", func() string {
			return op.SignJWT(with(func(m map[string]any) {
				m["events"] = map[string]any{"http://schemas.openid.net/event/backchannel-logout-wrong": map[string]any{}}
			}), logoutJWT)
		}},
		{"event not an object", func() string {
			return op.SignJWT(with(func(m map[string]any) { m["events"] = map[string]any{backchannelLogoutEvent: "yes"} }), logoutJWT)
		}},
		{"event null", func() string {
			return op.SignJWT(with(func(m map[string]any) { m["events"] = map[string]any{backchannelLogoutEvent: nil} }), logoutJWT)
		}},
		{"events an array", func() string {
			return op.SignJWT(with(func(m map[string]any) { m["events"] = []string{backchannelLogoutEvent} }), logoutJWT)
		}},
		{"neither sid nor sub", func() string {
			return op.SignJWT(with(func(m map[string]any) { delete(m, "sid"); delete(m, "sub") }), logoutJWT)
		}},
		{"sid not a string", func() string {
			return op.SignJWT(with(func(m map[string]any) { m["sid"] = 42; delete(m, "sub") }), logoutJWT)
		}},
		{"nonce", func() string {
			return op.SignJWT(with(func(m map[string]any) { m["nonce"] = "n-0S6_WzA2Mj" }), logoutJWT)
		}},
		{"typ JWT (an ID token's)", func() string { return op.SignJWT(e.logoutClaims(), map[string]any{"typ": "JWT"}) }},
		{"typ at+jwt", func() string { return op.SignJWT(e.logoutClaims(), map[string]any{"typ": "at+jwt"}) }},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			status, h, body := e.postLogoutToken(tc.tok())
			wantRefused(t, status, h, body)
			if got := e.replay("/", c); got != http.StatusOK {
				t.Fatalf("the session ended after a refused logout token: status %d", got)
			}
		})
	}
	if !strings.Contains(e.logs.String(), "back-channel logout refused") {
		t.Error("refusals are not logged")
	}
}

func TestBackchannelLogoutBadRequests(t *testing.T) {
	t.Parallel()
	e := newBackchannelEnv(t, Config{})
	c := e.signedIn()
	tok := e.op.SignJWT(e.logoutClaims(), logoutJWT)
	for name, send := range map[string]func() (int, http.Header, string){
		"JSON body": func() (int, http.Header, string) {
			return e.postBackchannel(url.Values{"logout_token": {tok}}, "application/json")
		},
		"no logout_token": func() (int, http.Header, string) {
			return e.postBackchannel(url.Values{"token": {tok}}, "application/x-www-form-urlencoded")
		},
		"two logout_tokens": func() (int, http.Header, string) {
			return e.postBackchannel(url.Values{"logout_token": {tok, tok}}, "application/x-www-form-urlencoded")
		},
	} {
		status, h, body := send()
		if status != http.StatusBadRequest || h.Get("Cache-Control") != "no-store" {
			t.Errorf("%s: %d %v %s", name, status, h, body)
		}
	}
	resp := e.get(e.app.URL+"/backchannel-logout?logout_token="+url.QueryEscape(tok), "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed || resp.Header.Get("Allow") != http.MethodPost {
		t.Errorf("GET: %d, Allow %q", resp.StatusCode, resp.Header.Get("Allow"))
	}
	if got := e.replay("/", c); got != http.StatusOK {
		t.Fatalf("the session ended after refused requests: status %d", got)
	}
}

func TestBackchannelLogoutReplayedJTI(t *testing.T) {
	t.Parallel()
	store := new(MemoryStore)
	e := newBackchannelEnv(t, Config{Store: store})
	c := e.signedIn()
	claims := e.logoutClaims()
	claims["sid"] = "another-provider-session"
	tok := e.op.SignJWT(claims, logoutJWT)
	if status, _, body := e.postLogoutToken(tok); status != http.StatusOK {
		t.Fatalf("first use: %d %s", status, body)
	}
	status, h, body := e.postLogoutToken(tok)
	wantRefused(t, status, h, body)
	if !strings.Contains(body, "jti") {
		t.Errorf("refusal of a replay does not say why: %s", body)
	}

	// Another process sharing the store refuses it too, at once.
	other := e.newRP(Config{Store: store})
	if err := other.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if other.clientID() != e.rp.clientID() {
		t.Fatalf("the second process registered its own client")
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodPost, "/anywhere", strings.NewReader(url.Values{"logout_token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	other.BackchannelLogoutHandler().ServeHTTP(rec, req)
	wantRefused(t, rec.Code, rec.Header(), rec.Body.String())

	// A fresh token with the same claims but another jti is accepted by it,
	// through the explicit handler, and ends the session in the first
	// process too.
	claims["sid"], claims["jti"] = opSID, randomString()
	rec = httptest.NewRecorder()
	req = httptest.NewRequest(http.MethodPost, "/anywhere", strings.NewReader(url.Values{"logout_token": {e.op.SignJWT(claims, logoutJWT)}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	other.BackchannelLogoutHandler().ServeHTTP(rec, req)
	if rec.Code != http.StatusOK {
		t.Fatalf("explicit handler: %d %s", rec.Code, rec.Body)
	}
	deadline := time.Now().Add(3 * time.Second)
	for e.replay("/", c) != http.StatusUnauthorized {
		if time.Now().After(deadline) {
			t.Fatal("the first process still accepts the session 3 s after a back-channel logout at the second")
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestBackchannelLogoutTraced(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var got []string
	record := func(what string, ev Event) {
		if ev.Op == opBackchannelLogout {
			mu.Lock()
			got = append(got, what+" "+ev.Op)
			mu.Unlock()
		}
	}
	tr := &Trace{
		Stop:      func(_ context.Context, ev Event) { record("stop", ev) },
		Exception: func(_ context.Context, ev Event) { record("exception", ev) },
	}
	e := newBackchannelEnv(t, Config{Trace: tr})
	e.signedIn()
	e.postLogoutToken("garbage")
	e.postLogoutToken(e.op.SignJWT(e.logoutClaims(), logoutJWT))
	want := "exception backchannel_logout,stop backchannel_logout"
	mu.Lock()
	defer mu.Unlock()
	if s := strings.Join(got, ","); s != want {
		t.Errorf("trace events %q, want %q", s, want)
	}
}

func TestLogoutPathsConfig(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		cfg         Config
		back, front string
	}{
		{Config{}, "/backchannel-logout", "/frontchannel-logout"},
		{Config{LogoutPath: "/auth/logout"}, "/auth/backchannel-logout", "/auth/frontchannel-logout"},
		{Config{BackchannelLogoutPath: "/bc", FrontchannelLogoutPath: "/fc"}, "/bc", "/fc"},
	} {
		tc.cfg.Issuer, tc.cfg.RedirectURL = "https://op.example", "https://app.example/auth/callback"
		rp, err := New(tc.cfg)
		if err != nil {
			t.Fatal(err)
		}
		if rp.cfg.BackchannelLogoutPath != tc.back || rp.cfg.FrontchannelLogoutPath != tc.front {
			t.Errorf("%+v: paths %q %q, want %q %q", tc.cfg, rp.cfg.BackchannelLogoutPath, rp.cfg.FrontchannelLogoutPath, tc.back, tc.front)
		}
	}
	for _, cfg := range []Config{
		{BackchannelLogoutPath: "/logout"},
		{BackchannelLogoutPath: "/auth/callback"},
		{FrontchannelLogoutPath: "relative"},
		{BackchannelLogoutPath: "/x", FrontchannelLogoutPath: "/x"},
	} {
		cfg.Issuer, cfg.RedirectURL = "https://op.example", "https://app.example/auth/callback"
		if _, err := New(cfg); err == nil {
			t.Errorf("New accepted %+v", cfg)
		}
	}
}

// Under Tenants, a back-channel logout naming only the subject ends its
// sessions in that tenant only, though another tenant signs the same
// subject in at the same provider; the default path of path-routed tenants
// follows their LogoutPath.
func TestBackchannelLogoutTenantScoped(t *testing.T) {
	t.Parallel()
	op, srv := newOP(t, devop.Options{AutoLogin: true, Discovery: func(doc map[string]any) {
		doc["backchannel_logout_supported"] = true
	}})
	e := &tenantEnv{t: t, ops: map[string]*devop.Provider{"a": op, "b": op}, store: new(MemoryStore)}
	e.app = newTLSServer(nil)
	t.Cleanup(e.app.Close)
	tenant := func(id string) Tenant {
		return Tenant{ID: id, Issuer: op.Issuer(), RedirectURL: e.app.URL + "/t/" + id + "/callback", LogoutPath: "/t/" + id + "/logout"}
	}
	var err error
	e.tenants, err = NewTenants(TenantsConfig{
		Resolve: func(r *http.Request) (Tenant, error) {
			id, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/t/"), "/")
			return tenant(id), nil
		},
		AllowIssuer: func(string) bool { return true },
		Base:        Config{Store: e.store, HTTPClient: srv.Client(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.app.Config.Handler = e.tenants.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := UserFromContext(r.Context())
		fmt.Fprintf(w, "%s@%s", u.Subject, u.Issuer)
	}))
	jar, _ := cookiejar.New(nil)
	e.browser = &http.Client{Jar: jar, Transport: srv.Client().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}

	cookies := map[string]*http.Cookie{}
	for _, id := range []string{"a", "b"} {
		if status, body := e.login("/t/" + id + "/home"); status != http.StatusOK {
			t.Fatalf("tenant %s: %d %s", id, status, body)
		}
		rp, _ := e.tenants.For(tenant(id))
		for _, c := range jar.Cookies(mustURL(t, e.app.URL)) {
			if c.Name == rp.cfg.SessionName {
				cookies[id] = c
			}
		}
		if cookies[id] == nil {
			t.Fatalf("no session cookie for tenant %s", id)
		}
	}
	replay := func(id string) int {
		req, _ := http.NewRequest(http.MethodGet, e.app.URL+"/t/"+id+"/home", nil)
		req.AddCookie(&http.Cookie{Name: cookies[id].Name, Value: cookies[id].Value})
		resp, err := (&http.Client{Transport: srv.Client().Transport}).Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	rpA, _ := e.tenants.For(tenant("a"))
	if m := op.Clients()[0].Metadata; m["backchannel_logout_uri"] != e.app.URL+"/t/a/backchannel-logout" {
		t.Errorf("tenant a registered backchannel_logout_uri %v", m["backchannel_logout_uri"])
	}
	now := time.Now()
	tok := op.SignJWT(map[string]any{
		"iss": op.Issuer(), "aud": rpA.clientID(), "iat": now.Unix(), "jti": randomString(), "sub": "demo-user",
		"events": map[string]any{backchannelLogoutEvent: map[string]any{}},
	}, logoutJWT)
	req, _ := http.NewRequest(http.MethodPost, e.app.URL+"/t/a/backchannel-logout", strings.NewReader(url.Values{"logout_token": {tok}}.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := (&http.Client{Transport: srv.Client().Transport}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("back-channel logout at tenant a: %d", resp.StatusCode)
	}
	if got := replay("a"); got != http.StatusUnauthorized {
		t.Errorf("tenant a's session after its back-channel logout: %d, want 401", got)
	}
	if got := replay("b"); got != http.StatusOK {
		t.Errorf("tenant b's session after tenant a's back-channel logout: %d, want 200", got)
	}
}

func mustURL(t *testing.T, s string) *url.URL {
	t.Helper()
	u, err := url.Parse(s)
	if err != nil {
		t.Fatal(err)
	}
	return u
}

// TestBackchannelUnknownKeysRateLimited: logout tokens signed with key ids
// never seen make go-oidc fetch the provider's keys again; a flood of them
// is answered 429 after a burst, while a token signed with the provider's
// known key still ends the session.
func TestBackchannelUnknownKeysRateLimited(t *testing.T) {
	t.Parallel()
	e := newBackchannelEnv(t, Config{})
	c := e.signedIn()
	limited := 0
	for i := range newKidBurst + 5 {
		status, _, _ := e.postLogoutToken(e.op.SignJWT(e.logoutClaims(), map[string]any{"typ": "logout+jwt", "kid": fmt.Sprintf("forged-%d", i)}))
		if status == http.StatusTooManyRequests {
			limited++
		} else if status != http.StatusBadRequest {
			t.Fatalf("forged kid %d: status %d, want 400 or 429", i, status)
		}
	}
	if limited == 0 {
		t.Fatalf("%d logout tokens with unknown key ids, none refused with 429", newKidBurst+5)
	}
	if got := e.replay("/", c); got != http.StatusOK {
		t.Fatalf("the flood ended the session: %d", got)
	}
	if status, _, body := e.postLogoutToken(e.op.SignJWT(e.logoutClaims(), logoutJWT)); status != http.StatusOK {
		t.Fatalf("a valid logout token after the flood: %d %s", status, body)
	}
	if got := e.replay("/", c); got == http.StatusOK {
		t.Error("the session survived a valid logout token")
	}
}
