package interop_test

// End-to-end tests of the oidcrp middleware against the real provider: an
// application protected by rp.Require runs on an httptest server, a
// "browser" (an http.Client with a cookie jar that steps through every
// redirect itself) signs in through the provider started by interop.Start,
// and each test asserts what a user would see.

import (
	"bytes"
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/internal/interop"
)

const (
	sessionCookie = "oidcrp"        // Config.SessionName default
	flowPrefix    = "oidcrp_login_" // per-attempt login cookies
	callbackPath  = "/auth/callback"
)

// ---------------------------------------------------------------------------
// Recording the RP's requests to the provider.

// providerCall is one request the RP made to the provider and its answer.
type providerCall struct {
	at       time.Time
	method   string
	url      *url.URL
	header   http.Header
	body     string
	status   int
	respBody string
}

// form decodes a form-encoded request body.
func (c providerCall) form() url.Values {
	v, _ := url.ParseQuery(c.body)
	return v
}

// recorder is the Transport of the RP's HTTP client: it keeps every request
// and answer so that tests can assert how the RP talked to the provider.
type recorder struct {
	base  *http.Transport
	mu    sync.Mutex
	calls []providerCall
}

func (r *recorder) RoundTrip(req *http.Request) (*http.Response, error) {
	call := providerCall{at: time.Now(), method: req.Method, url: req.URL, header: req.Header.Clone()}
	if req.Body != nil && req.Body != http.NoBody {
		b, err := io.ReadAll(req.Body)
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		call.body = string(b)
		req = req.Clone(req.Context())
		req.Body = io.NopCloser(bytes.NewReader(b))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(bytes.NewReader(b)), nil }
	}
	resp, err := r.base.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	b, err := io.ReadAll(resp.Body)
	resp.Body.Close()
	if err != nil {
		return nil, err
	}
	resp.Body = io.NopCloser(bytes.NewReader(b))
	call.status, call.respBody = resp.StatusCode, string(b)
	r.mu.Lock()
	r.calls = append(r.calls, call)
	r.mu.Unlock()
	return resp, nil
}

// find returns the calls with the method to the URL (without its query).
func (r *recorder) find(method, endpoint string) []providerCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	var out []providerCall
	for _, c := range r.calls {
		u := *c.url
		u.RawQuery = ""
		if c.method == method && u.String() == endpoint {
			out = append(out, c)
		}
	}
	return out
}

func (r *recorder) all() []providerCall {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.calls)
}

func (r *recorder) summary() string {
	var b strings.Builder
	for _, c := range r.all() {
		fmt.Fprintf(&b, "  %s %s %s -> %d\n", c.at.Format("15:04:05.000"), c.method, c.url, c.status)
	}
	return b.String()
}

// ---------------------------------------------------------------------------
// The application.

type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// app is an application whose every route is protected by rp.Require; the
// protected handler answers the signed-in user as JSON.
type app struct {
	t     *testing.T
	op    *interop.OP
	disc  map[string]any // the provider's discovery document
	URL   string         // http://127.0.0.1:PORT
	rp    *oidcrp.RP
	store *oidcrp.MemoryStore
	logs  *lockedBuffer
	rec   *recorder
	calls atomic.Int64 // requests that reached the protected handler
}

// userView is what the protected handler answers.
type userView struct {
	Sub    string         `json:"sub"`
	Iss    string         `json:"iss"`
	Claims map[string]any `json:"claims"`
	Path   string         `json:"path"`
	// With the query parameter "userinfo": the provider's userinfo
	// response to a GET through the user's client (oidcrp.UserClient).
	UserInfo *downstream `json:"userinfo,omitempty"`
}

// downstream is the answer to a request through the user's client.
type downstream struct {
	Status int    `json:"status"`
	Body   string `json:"body"`
	Err    string `json:"err"`
}

func newApp(t *testing.T, op *interop.OP, configure func(*oidcrp.Config)) *app {
	t.Helper()
	srv := httptest.NewUnstartedServer(nil) // listens already: its URL is known
	a := &app{
		t: t, op: op, disc: discover(t, op),
		URL:   "http://" + srv.Listener.Addr().String(),
		store: new(oidcrp.MemoryStore),
		logs:  &lockedBuffer{},
		rec:   &recorder{base: http.DefaultTransport.(*http.Transport).Clone()},
	}
	cfg := oidcrp.Config{
		Issuer:      op.Issuer,
		RedirectURL: a.URL + callbackPath,
		Store:       a.store,
		Logger:      slog.New(slog.NewTextHandler(a.logs, &slog.HandlerOptions{Level: slog.LevelDebug})),
		HTTPClient:  &http.Client{Timeout: 10 * time.Second, Transport: a.rec},
	}
	if configure != nil {
		configure(&cfg)
	}
	rp, err := oidcrp.New(cfg)
	if err != nil {
		t.Fatalf("oidcrp.New: %v", err)
	}
	a.rp = rp
	srv.Config.Handler = rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		a.calls.Add(1)
		u, ok := oidcrp.UserFromContext(r.Context())
		if !ok {
			http.Error(w, "no user in the context", http.StatusInternalServerError)
			return
		}
		v := userView{Sub: u.Subject, Iss: u.Issuer, Path: r.URL.RequestURI()}
		if err := u.Claims(&v.Claims); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		if r.URL.Query().Has("userinfo") {
			v.UserInfo = &downstream{}
			hc, err := oidcrp.UserClient(r.Context())
			var resp *http.Response
			if err == nil {
				ep, _ := a.disc["userinfo_endpoint"].(string)
				resp, err = hc.Get(ep)
			}
			if err != nil {
				v.UserInfo.Err = err.Error()
			} else {
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				v.UserInfo.Status, v.UserInfo.Body = resp.StatusCode, string(b)
			}
		}
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(v)
	}))
	srv.Start()
	t.Cleanup(func() {
		srv.Close()
		a.rec.base.CloseIdleConnections()
		if t.Failed() {
			t.Logf("RP %s log:\n%s", a.URL, a.logs)
			t.Logf("RP %s requests to the provider:\n%s", a.URL, a.rec.summary())
		}
	})
	return a
}

func (a *app) endpoint(name string) string {
	s, _ := a.disc[name].(string)
	if s == "" {
		a.t.Fatalf("discovery has no %s", name)
	}
	return s
}

// registrations returns the RP's registration requests (RFC 7591 POST).
func (a *app) registrations() []providerCall {
	return a.rec.find(http.MethodPost, a.endpoint("registration_endpoint"))
}

// codeExchanges returns the RP's authorization_code token requests.
func (a *app) codeExchanges() []providerCall { return a.tokenRequests("authorization_code") }

// refreshes returns the refresh_token grants the app sent, in order.
func (a *app) refreshes() []providerCall { return a.tokenRequests("refresh_token") }

// tokenRequests returns the app's token requests of grantType, in order.
func (a *app) tokenRequests(grantType string) []providerCall {
	var out []providerCall
	for _, c := range a.rec.find(http.MethodPost, a.endpoint("token_endpoint")) {
		if c.form().Get("grant_type") == grantType {
			out = append(out, c)
		}
	}
	return out
}

// lastIDToken returns the ID token of the last successful code exchange.
func (a *app) lastIDToken() string {
	a.t.Helper()
	ex := a.codeExchanges()
	for i := len(ex) - 1; i >= 0; i-- {
		var tok map[string]any
		if ex[i].status == http.StatusOK && json.Unmarshal([]byte(ex[i].respBody), &tok) == nil {
			if s, _ := tok["id_token"].(string); s != "" {
				return s
			}
		}
	}
	a.t.Fatalf("no successful code exchange recorded")
	return ""
}

// stored returns the credentials the RP keeps in its store, as JSON.
func (a *app) stored() map[string]any {
	a.t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	b, err := a.store.Load(ctx, "oidcrp:client")
	if err != nil {
		a.t.Fatalf("loading the stored credentials: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		a.t.Fatalf("stored credentials are not JSON: %v", err)
	}
	return m
}

func storedAuthMethod(m map[string]any) string {
	meta, _ := m["metadata"].(map[string]any)
	s, _ := meta["token_endpoint_auth_method"].(string)
	return s
}

// logCount counts the RP's log records containing s.
func (a *app) logCount(s string) int { return strings.Count(a.logs.String(), s) }

// expectSignedIn checks that a navigation to path ended on the protected
// handler, after the provider, with the test user.
func (a *app) expectSignedIn(p page, path string) userView {
	a.t.Helper()
	if p.status != http.StatusOK || p.url != a.URL+path {
		a.t.Fatalf("navigation to %s ended with status %d at %s, want 200 at the handler; hops %v\n%.600s", path, p.status, p.url, p.hops, p.body)
	}
	var v userView
	if err := json.Unmarshal([]byte(p.body), &v); err != nil {
		a.t.Fatalf("handler answer %q: %v", p.body, err)
	}
	if v.Sub != interop.TestUserSub || v.Iss != a.op.Issuer || v.Path != path {
		a.t.Errorf("handler saw sub %q iss %q path %q, want %q %q %q", v.Sub, v.Iss, v.Path, interop.TestUserSub, a.op.Issuer, path)
	}
	return v
}

// expectLoginTrip checks the hops of a login: the app, the provider's
// authorization endpoint, the callback, the app again.
func (a *app) expectLoginTrip(p page) {
	a.t.Helper()
	if !p.passed(a.endpoint("authorization_endpoint")+"?") || !p.passed(a.URL+callbackPath+"?") {
		a.t.Errorf("login did not go app → authorization endpoint → callback: %v", p.hops)
	}
}

// ---------------------------------------------------------------------------
// The browser.

type browser struct {
	t      *testing.T
	jar    *cookiejar.Jar
	client *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, jar: jar, client: &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// page is where a navigation ended.
type page struct {
	hops   []string // every URL requested, in order
	url    string   // the URL of the last response
	status int
	header http.Header
	body   string
}

func (p page) passed(prefix string) bool {
	return slices.ContainsFunc(p.hops, func(h string) bool { return strings.HasPrefix(h, prefix) })
}

// navigate is a top-level GET navigation that follows every redirect.
func (b *browser) navigate(u string) page {
	b.t.Helper()
	return b.follow(b.request(http.MethodGet, u, nil))
}

func (b *browser) request(method, u string, body io.Reader) *http.Request {
	b.t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml,*/*;q=0.8")
	return req
}

// follow sends req and follows redirects as GET navigations.
func (b *browser) follow(req *http.Request) page {
	b.t.Helper()
	var p page
	for range 20 {
		p.hops = append(p.hops, req.URL.String())
		p.url = req.URL.String()
		resp, err := b.client.Do(req)
		if err != nil {
			b.t.Fatalf("%s %s: %v (hops %v)", req.Method, req.URL, err, p.hops)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		p.status, p.header, p.body = resp.StatusCode, resp.Header, string(body)
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			return p
		}
		next, err := req.URL.Parse(loc)
		if err != nil {
			b.t.Fatalf("bad Location %q: %v", loc, err)
		}
		req = b.request(http.MethodGet, next.String(), nil)
	}
	b.t.Fatalf("more than 20 redirects: %v", p.hops)
	return p
}

// send makes one request without following its redirect.
func (b *browser) send(req *http.Request) page {
	b.t.Helper()
	resp, err := b.client.Do(req)
	if err != nil {
		b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	return page{hops: []string{req.URL.String()}, url: req.URL.String(), status: resp.StatusCode, header: resp.Header, body: string(body)}
}

// api is a fetch()-style request: JSON wanted, redirects not followed.
func (b *browser) api(u string) page {
	b.t.Helper()
	req := b.request(http.MethodGet, u, nil)
	req.Header.Set("Accept", "application/json")
	return b.send(req)
}

// cookie returns the browser's cookie for the URL, or nil.
func (b *browser) cookie(u, name string) *http.Cookie {
	pu, err := url.Parse(u)
	if err != nil {
		b.t.Fatal(err)
	}
	for _, c := range b.jar.Cookies(pu) {
		if c.Name == name {
			return c
		}
	}
	return nil
}

// appCookies returns the names of the RP's cookies in the browser. Cookies
// do not depend on the port, so the jar mixes the app's cookies with the
// provider's (both on 127.0.0.1); the RP's all start with "oidcrp".
func (b *browser) appCookies(u string) []string {
	pu, _ := url.Parse(u)
	var names []string
	for _, c := range b.jar.Cookies(pu) {
		if strings.HasPrefix(c.Name, sessionCookie) {
			names = append(names, c.Name)
		}
	}
	return names
}

// pendingLogin reports whether the browser holds a login attempt cookie.
func (b *browser) pendingLogin(u string) bool {
	return slices.ContainsFunc(b.appCookies(u), func(n string) bool { return strings.HasPrefix(n, flowPrefix) })
}

// ---------------------------------------------------------------------------
// Small helpers.

func discover(t *testing.T, op *interop.OP) map[string]any {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Get(op.Issuer + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatalf("discovery: %v", err)
	}
	defer resp.Body.Close()
	var d map[string]any
	if err := json.NewDecoder(resp.Body).Decode(&d); err != nil || resp.StatusCode != http.StatusOK {
		t.Fatalf("discovery: status %d: %v", resp.StatusCode, err)
	}
	return d
}

// jwtPart decodes the header (0) or payload (1) of a compact JWS.
func jwtPart(t *testing.T, token string, i int) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %.80q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[i])
	if err != nil {
		t.Fatalf("JWT part %d: %v", i, err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("JWT part %d: %v", i, err)
	}
	return m
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

// tokenProbe sends a token request with a made-up code and the given client
// authentication (HTTP Basic); it returns the status and "error" member.
func tokenProbe(t *testing.T, tokenEndpoint, redirectURI, clientID, secret string) (int, string) {
	t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {"made-up"}, "redirect_uri": {redirectURI}, "code_verifier": {strings.Repeat("a", 43)}}
	req, err := http.NewRequest(http.MethodPost, tokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(url.QueryEscape(clientID), url.QueryEscape(secret))
	return sendProbe(t, req)
}

// sendProbe sends a token probe and returns its status and "error" member.
func sendProbe(t *testing.T, req *http.Request) (int, string) {
	t.Helper()
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("token probe: %v", err)
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	_ = json.NewDecoder(resp.Body).Decode(&e)
	return resp.StatusCode, e.Error
}

// replay sends an API request carrying only the given (saved) cookie, as an
// attacker or a stale tab would, and returns the status.
func replay(t *testing.T, u string, c *http.Cookie) int {
	t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Accept", "application/json")
	req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatalf("GET %s: %v", u, err)
	}
	resp.Body.Close()
	return resp.StatusCode
}

func sleepUntil(t *testing.T, when time.Time, why string) {
	t.Helper()
	d := time.Until(when)
	if d > 20*time.Second {
		t.Fatalf("refusing to sleep %v (%s)", d, why)
	}
	if d > 0 {
		t.Logf("sleeping %v: %s", d.Round(time.Millisecond), why)
		time.Sleep(d)
	}
}

// ---------------------------------------------------------------------------
// 1. Open registration, client_secret_basic: the RP's pick at a provider
// that takes no private_key_jwt (keyauth_test.go covers the one that does).

// secretMethods are the client authentication methods of a provider that
// takes client secrets only.
var secretMethods = []string{"client_secret_basic", "client_secret_post", "none"}

func TestRPLoginOpenRegistrationClientSecretBasic(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{AuthMethods: secretMethods})
	a := newApp(t, op, nil)
	b := newBrowser(t)

	p := b.navigate(a.URL + "/profile?tab=1")
	a.expectSignedIn(p, "/profile?tab=1")
	a.expectLoginTrip(p)
	if !p.passed(op.InteractionURLPrefix) {
		t.Errorf("first login did not pass through the provider's login (interaction) step: %v", p.hops)
	}
	if n := a.calls.Load(); n != 1 {
		t.Errorf("handler ran %d times, want 1", n)
	}
	if c := b.cookie(a.URL, sessionCookie); c == nil || c.Value == "" {
		t.Errorf("no session cookie after login: %v", b.appCookies(a.URL))
	}
	if b.pendingLogin(a.URL) {
		t.Errorf("login cookie left behind after the callback: %v", b.appCookies(a.URL))
	}

	clientID := a.rp.Status().ClientID
	creds := a.stored()
	if clientID == "" || str(creds, "client_id") != clientID {
		t.Fatalf("rp client_id %q, stored client_id %q", clientID, str(creds, "client_id"))
	}
	if m := storedAuthMethod(creds); m != "client_secret_basic" || a.rp.Status().AuthMethod != m {
		t.Errorf("registered token_endpoint_auth_method = %q, Status().AuthMethod %q, want client_secret_basic", m, a.rp.Status().AuthMethod)
	}
	if str(creds, "client_secret") == "" || str(creds, "registration_access_token") == "" || str(creds, "registration_client_uri") == "" {
		t.Errorf("stored credentials lack the secret or the RFC 7592 credentials: %v", slices.Sorted(maps.Keys(creds)))
	}

	// The token request authenticated with HTTP Basic, not in the body.
	ex := a.codeExchanges()
	if len(ex) != 1 {
		t.Fatalf("%d code exchanges, want 1", len(ex))
	}
	user, pass, ok := (&http.Request{Header: ex[0].header}).BasicAuth()
	if !ok || user != url.QueryEscape(clientID) || pass == "" || ex[0].form().Has("client_secret") {
		t.Errorf("token request: Basic %v user %q, client_secret in body %v", ok, user, ex[0].form().Has("client_secret"))
	}

	// The session carries the next request without the provider.
	p = b.navigate(a.URL + "/again")
	a.expectSignedIn(p, "/again")
	if len(p.hops) != 1 {
		t.Errorf("signed-in navigation was redirected: %v", p.hops)
	}
	if api := b.api(a.URL + "/api"); api.status != http.StatusOK {
		t.Errorf("signed-in API request: status %d", api.status)
	}

	// A second user (browser) logs in with the same client.
	p = newBrowser(t).navigate(a.URL + "/")
	a.expectSignedIn(p, "/")
	if a.rp.Status().ClientID != clientID {
		t.Errorf("client_id changed from %s to %s", clientID, a.rp.Status().ClientID)
	}
	if n := len(a.registrations()); n != 1 {
		t.Errorf("%d registration requests, want exactly 1", n)
	}
	if n := a.logCount("oidcrp: registered client"); n != 1 {
		t.Errorf("%d 'registered client' log records, want 1", n)
	}
	if n := a.calls.Load(); n != 4 {
		t.Errorf("handler ran %d times, want 4", n)
	}
}

// ---------------------------------------------------------------------------
// 2. Registration that requires an initial access token.

func TestRPInitialAccessToken(t *testing.T) {
	t.Parallel()
	const iat = "rp-interop-initial-access-token"
	op := interop.Start(t, interop.Options{InitialAccessToken: iat})

	t.Run("missing", func(t *testing.T) {
		a := newApp(t, op, nil)
		b := newBrowser(t)
		p := b.navigate(a.URL + "/")
		if p.status != http.StatusServiceUnavailable || len(p.hops) != 1 {
			t.Fatalf("navigation: status %d after %v, want 503 at the app", p.status, p.hops)
		}
		if ra, err := strconv.Atoi(p.header.Get("Retry-After")); err != nil || ra < 1 {
			t.Errorf("Retry-After = %q", p.header.Get("Retry-After"))
		}
		if !strings.Contains(p.body, "temporarily unavailable") || !strings.Contains(p.body, "temporarily_unavailable") {
			t.Errorf("error page does not say what happened: %.500s", p.body)
		}
		if names := b.appCookies(a.URL); len(names) != 0 {
			t.Errorf("cookies set by a failed login: %v", names)
		}
		if a.calls.Load() != 0 {
			t.Error("the protected handler ran")
		}

		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		err := a.rp.Ready(ctx)
		if !errors.Is(err, oidcrp.ErrUnavailable) {
			t.Fatalf("Ready = %v, want an error wrapping ErrUnavailable", err)
		}
		if !strings.Contains(err.Error(), "invalid_token") && !strings.Contains(err.Error(), "401") {
			t.Errorf("Ready error %q names neither invalid_token nor 401", err)
		}
		var re *oidcrp.RegistrationError
		if !errors.As(err, &re) {
			t.Fatalf("Ready error %v does not unwrap to *RegistrationError", err)
		}
		if re.StatusCode != http.StatusUnauthorized || re.ErrorCode != "invalid_token" {
			t.Errorf("RegistrationError = %+v, want 401 invalid_token", re)
		}
		t.Logf("Ready: %v", err)
		if a.rp.Status().ClientID != "" {
			t.Errorf("ClientID = %q after a refused registration", a.rp.Status().ClientID)
		}
		if regs := a.registrations(); len(regs) == 0 {
			t.Errorf("no registration request recorded")
		} else if h := regs[0].header.Get("Authorization"); h != "" {
			t.Errorf("registration without Config.InitialAccessToken sent Authorization %q", h)
		}
		// The process is still fine: an API call gets its plain 401.
		if api := b.api(a.URL + "/api"); api.status != http.StatusUnauthorized {
			t.Errorf("API request: status %d", api.status)
		}
	})

	t.Run("given", func(t *testing.T) {
		a := newApp(t, op, func(c *oidcrp.Config) { c.InitialAccessToken = iat })
		p := newBrowser(t).navigate(a.URL + "/")
		a.expectSignedIn(p, "/")
		regs := a.registrations()
		if len(regs) != 1 || regs[0].header.Get("Authorization") != "Bearer "+iat || regs[0].status != http.StatusCreated {
			t.Errorf("registration requests: %d (want 1 with the bearer token, answered 201)", len(regs))
		}
	})
}

// ---------------------------------------------------------------------------
// 3. client_secret_post and none, requested and used.

func TestRPTokenEndpointAuthMethods(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{})
	for _, method := range []string{"client_secret_post", "none"} {
		t.Run(method, func(t *testing.T) {
			a := newApp(t, op, func(c *oidcrp.Config) { c.Metadata.TokenEndpointAuthMethod = method })
			p := newBrowser(t).navigate(a.URL + "/")
			a.expectSignedIn(p, "/")
			a.expectLoginTrip(p)

			creds := a.stored()
			if m := storedAuthMethod(creds); m != method {
				t.Errorf("stored metadata.token_endpoint_auth_method = %q, want %q", m, method)
			}
			secret := str(creds, "client_secret")
			if method == "none" && secret != "" {
				t.Errorf("a public client stored a client_secret")
			}
			if method != "none" && secret == "" {
				t.Errorf("no client_secret stored for %s", method)
			}
			var reg map[string]any
			if regs := a.registrations(); len(regs) != 1 || json.Unmarshal([]byte(regs[0].body), &reg) != nil || reg["token_endpoint_auth_method"] != method {
				t.Errorf("registration request did not ask for %s: %v", method, reg["token_endpoint_auth_method"])
			}

			// How the token request authenticated.
			ex := a.codeExchanges()
			if len(ex) != 1 {
				t.Fatalf("%d code exchanges, want 1", len(ex))
			}
			f := ex[0].form()
			if h := ex[0].header.Get("Authorization"); h != "" {
				t.Errorf("%s token request carries an Authorization header", method)
			}
			if f.Get("client_id") != a.rp.Status().ClientID {
				t.Errorf("token request client_id = %q, want %q", f.Get("client_id"), a.rp.Status().ClientID)
			}
			switch method {
			case "client_secret_post":
				if f.Get("client_secret") == "" || f.Get("client_secret") != secret {
					t.Errorf("client_secret_post token request lacks the stored secret")
				}
			case "none":
				if f.Has("client_secret") {
					t.Errorf("public client sent client_secret")
				}
			}
			if f.Get("code_verifier") == "" {
				t.Errorf("token request without PKCE code_verifier")
			}
		})
	}
}

// ---------------------------------------------------------------------------
// 4. Claims reach the handler (from userinfo).

func TestRPUserInfoClaimsReachHandler(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{})
	a := newApp(t, op, func(c *oidcrp.Config) { c.Scopes = []string{"profile", "email", "groups"} })
	p := newBrowser(t).navigate(a.URL + "/me")
	v := a.expectSignedIn(p, "/me")
	c := v.Claims
	if c["name"] != interop.TestUserName || c["email"] != interop.TestUserEmail || c["email_verified"] != true ||
		fmt.Sprint(c["groups"]) != fmt.Sprint(interop.TestUserGroups) || c["sub"] != interop.TestUserSub || c["iss"] != op.Issuer {
		t.Errorf("handler claims = %v", c)
	}

	// They came from userinfo: the ID token has none of them.
	idc := jwtPart(t, a.lastIDToken(), 1)
	for _, k := range []string{"name", "email", "groups"} {
		if _, ok := idc[k]; ok {
			t.Errorf("ID token carries %s; the provider was expected to put it only in userinfo", k)
		}
	}
	ui := a.rec.find(http.MethodGet, a.endpoint("userinfo_endpoint"))
	if len(ui) != 1 || ui[0].status != http.StatusOK || !strings.HasPrefix(ui[0].header.Get("Authorization"), "Bearer ") {
		t.Fatalf("userinfo requests: %d", len(ui))
	}
	var uiBody map[string]any
	if err := json.Unmarshal([]byte(ui[0].respBody), &uiBody); err != nil || uiBody["sub"] != idc["sub"] {
		t.Errorf("userinfo sub %v, ID token sub %v", uiBody["sub"], idc["sub"])
	}

	// With SkipUserInfo, the same provider gives the handler no profile claims.
	t.Run("SkipUserInfo", func(t *testing.T) {
		a := newApp(t, op, func(c *oidcrp.Config) {
			c.Scopes = []string{"profile", "email", "groups"}
			c.SkipUserInfo = true
		})
		v := a.expectSignedIn(newBrowser(t).navigate(a.URL+"/me"), "/me")
		if _, ok := v.Claims["email"]; ok {
			t.Errorf("email without userinfo: %v", v.Claims)
		}
		if n := len(a.rec.find(http.MethodGet, a.endpoint("userinfo_endpoint"))); n != 0 {
			t.Errorf("%d userinfo requests despite SkipUserInfo", n)
		}
	})
}

// ---------------------------------------------------------------------------
// 5. Refresh (Config.KeepTokens), and, without it, session end at ID token
// expiry and silent re-login.

// TestRPRefreshKeepsSessionAlive: with KeepTokens, an expired session is
// renewed through the stored refresh token, without a browser round trip:
// an API request after expiry still succeeds.
func TestRPRefreshKeepsSessionAlive(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{IDTokenTTL: 3 * time.Second, AccessTokenTTL: 3 * time.Second})
	a := newApp(t, op, func(c *oidcrp.Config) { c.KeepTokens = true })
	b := newBrowser(t)
	a.expectSignedIn(b.navigate(a.URL+"/dash"), "/dash")
	exp, _ := jwtPart(t, a.lastIDToken(), 1)["exp"].(float64)
	sleepUntil(t, time.Unix(int64(exp), 0).Add(200*time.Millisecond), "until the ID token and access token expire")

	api := b.api(a.URL + "/api")
	if api.status != http.StatusOK || !strings.Contains(api.body, `"sub":"`+interop.TestUserSub+`"`) {
		t.Fatalf("API request after expiry with KeepTokens: status %d %.200s", api.status, api.body)
	}
	refreshes := a.refreshes()
	if len(refreshes) != 1 || refreshes[0].status != http.StatusOK {
		t.Fatalf("%d refresh_token grants, want 1 that succeeds", len(refreshes))
	}
	if n := len(a.codeExchanges()); n != 1 {
		t.Errorf("%d code exchanges, want 1 (no new login)", n)
	}
	// The refreshed session, written back to the browser, serves the next request without a refresh.
	if api := b.api(a.URL + "/api"); api.status != http.StatusOK {
		t.Errorf("request after the refresh: status %d", api.status)
	}
}

func TestRPSilentReloginAfterIDTokenExpiry(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{IDTokenTTL: 3 * time.Second, AccessTokenTTL: 3 * time.Second})
	a := newApp(t, op, nil)
	b := newBrowser(t)

	p := b.navigate(a.URL + "/dash")
	a.expectSignedIn(p, "/dash")
	if !p.passed(op.InteractionURLPrefix) {
		t.Errorf("first login did not pass through the interaction: %v", p.hops)
	}
	idc := jwtPart(t, a.lastIDToken(), 1)
	exp, _ := idc["exp"].(float64)
	iat, _ := idc["iat"].(float64)
	if exp-iat != 3 {
		t.Errorf("ID token lifetime %v s, want 3", exp-iat)
	}
	old := b.cookie(a.URL, sessionCookie)
	if old == nil {
		t.Fatal("no session cookie")
	}
	if api := b.api(a.URL + "/api"); api.status != http.StatusOK {
		t.Fatalf("API request before expiry: status %d", api.status)
	}

	sleepUntil(t, time.Unix(int64(exp), 0).Add(200*time.Millisecond), "until the ID token (and so the session) expires")

	// A fetch() is not redirected: 401 JSON.
	api := b.api(a.URL + "/api")
	if api.status != http.StatusUnauthorized || api.header.Get("WWW-Authenticate") == "" || !strings.Contains(api.body, "login_required") {
		t.Errorf("API request after expiry: status %d, WWW-Authenticate %q, body %.200s", api.status, api.header.Get("WWW-Authenticate"), api.body)
	}
	// The server refuses the expired session too, not only the cookie jar.
	if status := replay(t, a.URL+"/api", old); status != http.StatusUnauthorized {
		t.Errorf("replayed expired session cookie: status %d, want 401", status)
	}

	// A navigation signs in again without the provider's login page.
	calls := a.calls.Load()
	p = b.navigate(a.URL + "/dash?again")
	a.expectSignedIn(p, "/dash?again")
	a.expectLoginTrip(p)
	if p.passed(op.InteractionURLPrefix) {
		t.Errorf("re-login went through the provider's interaction although its session is valid: %v", p.hops)
	}
	if a.calls.Load() != calls+1 {
		t.Errorf("handler calls %d → %d", calls, a.calls.Load())
	}
	if n := len(a.codeExchanges()); n != 2 {
		t.Errorf("%d code exchanges, want 2", n)
	}
	if refreshes := len(a.refreshes()); refreshes != 0 {
		t.Errorf("%d refresh_token grants; without KeepTokens the middleware does not refresh", refreshes)
	}
	var tok map[string]any
	_ = json.Unmarshal([]byte(a.codeExchanges()[0].respBody), &tok)
	meta, _ := a.stored()["metadata"].(map[string]any)
	t.Logf("registered grant_types %v; first token response has a refresh_token: %v (unused by the RP)",
		meta["grant_types"], tok["refresh_token"] != nil)
}

// ---------------------------------------------------------------------------
// 6. RP-initiated logout ends the provider session too.

func TestRPLogoutEndsProviderSession(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{})
	a := newApp(t, op, nil)
	b := newBrowser(t)
	p := b.navigate(a.URL + "/")
	a.expectSignedIn(p, "/")
	old := b.cookie(a.URL, sessionCookie)
	if old == nil {
		t.Fatal("no session cookie")
	}
	logoutChecks(t, a, b, old)
}

// logoutChecks signs the browser out through POST /logout and checks both
// sessions are gone.
func logoutChecks(t *testing.T, a *app, b *browser, old *http.Cookie) {
	t.Helper()
	op := a.op
	req := b.request(http.MethodPost, a.URL+"/logout", strings.NewReader(""))
	req.Header.Set("Origin", a.URL)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	first := b.send(req)
	if first.status != http.StatusSeeOther {
		t.Fatalf("POST /logout: status %d, want 303: %.300s", first.status, first.body)
	}
	loc, err := url.Parse(first.header.Get("Location"))
	if err != nil {
		t.Fatal(err)
	}
	q := loc.Query()
	endSession := loc.Scheme + "://" + loc.Host + loc.Path
	if endSession != a.endpoint("end_session_endpoint") {
		t.Errorf("logout redirect to %s, want the end_session_endpoint %s", endSession, a.endpoint("end_session_endpoint"))
	}
	if q.Get("post_logout_redirect_uri") != a.URL+"/logout" || q.Get("state") == "" || q.Get("id_token_hint") == "" {
		t.Errorf("end_session parameters: %v", q)
	}
	if hint := q.Get("id_token_hint"); hint != "" {
		hc := jwtPart(t, hint, 1)
		if hc["sub"] != interop.TestUserSub || hc["aud"] != a.rp.Status().ClientID {
			t.Errorf("id_token_hint sub %v aud %v", hc["sub"], hc["aud"])
		}
	}
	if c := b.cookie(a.URL, sessionCookie); c != nil {
		t.Errorf("session cookie still present after POST /logout")
	}

	p := b.navigate(loc.String())
	wantBack := a.URL + "/logout?state=" + url.QueryEscape(q.Get("state"))
	if p.status != http.StatusOK || p.url != wantBack || !strings.Contains(p.body, "Signed out") {
		t.Fatalf("logout ended with status %d at %s (want the app's %s, 'Signed out'); hops %v\n%.400s", p.status, p.url, wantBack, p.hops, p.body)
	}
	if !p.passed(op.Issuer + "/session/end/auto?") {
		t.Errorf("logout did not pass through the provider's confirmation: %v", p.hops)
	}
	if n := a.logCount("unknown state"); n != 0 {
		t.Errorf("RP logged the post-logout state as unknown")
	}
	if names := b.appCookies(a.URL); len(names) != 0 {
		t.Errorf("RP cookies left after logout: %v", names)
	}
	// The old session cookie, replayed, is refused.
	if status := replay(t, a.URL+"/api", old); status != http.StatusUnauthorized {
		t.Errorf("replayed session cookie after logout: status %d, want 401", status)
	}

	// The provider's login is shown again.
	logins := strings.Count(op.Logs(), "prompt=login")
	p = b.navigate(a.URL + "/back")
	a.expectSignedIn(p, "/back")
	if !p.passed(op.InteractionURLPrefix) {
		t.Errorf("login after logout did not pass through the provider's login: %v", p.hops)
	}
	if n := strings.Count(op.Logs(), "prompt=login"); n != logins+1 {
		t.Errorf("provider login prompts %d → %d, want one more", logins, n)
	}
}

// ---------------------------------------------------------------------------
// 7. The provider restarts and forgets the client.

func TestRPProviderRestartReregisters(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{})
	a := newApp(t, op, nil)
	alice := newBrowser(t)
	a.expectSignedIn(alice.navigate(a.URL+"/"), "/")
	oldClient := a.rp.Status().ClientID
	oldKid := str(jwtPart(t, a.lastIDToken(), 0), "kid")
	jwksBefore := len(a.rec.find(http.MethodGet, a.endpoint("jwks_uri")))

	op.Restart(t)
	restarted := time.Now()

	// The RP's sessions are its own: alice stays signed in at the app.
	p := alice.navigate(a.URL + "/still")
	a.expectSignedIn(p, "/still")
	if len(p.hops) != 1 {
		t.Errorf("signed-in navigation after the restart went elsewhere: %v", p.hops)
	}

	// bob's first attempt reaches the provider with the forgotten client:
	// the provider's own error page, which the RP never sees.
	bob := newBrowser(t)
	calls := a.calls.Load()
	p = bob.navigate(a.URL + "/bob")
	if p.status == http.StatusOK && p.url == a.URL+"/bob" {
		t.Logf("first attempt after the restart already succeeded (allowed): %v", p.hops)
	} else {
		if !strings.HasPrefix(p.url, op.Issuer) || p.status != http.StatusBadRequest || !strings.Contains(p.body, "invalid_client") {
			t.Errorf("first attempt after the restart ended with status %d at %s: %.300s", p.status, p.url, p.body)
		}
		if a.calls.Load() != calls {
			t.Error("handler ran on a failed attempt")
		}
		if !bob.pendingLogin(a.URL) {
			t.Errorf("no pending login cookie after the failed attempt: %v", bob.appCookies(a.URL))
		}
		// The second attempt, same browser: the RP checks, re-registers, succeeds.
		p = bob.navigate(a.URL + "/bob")
	}
	a.expectSignedIn(p, "/bob")
	a.expectLoginTrip(p)

	newClient := a.rp.Status().ClientID
	if newClient == "" || newClient == oldClient {
		t.Errorf("client_id %q → %q, want a new one", oldClient, newClient)
	}
	if n := len(a.registrations()); n != 2 {
		t.Errorf("%d registrations, want 2 (initial and after the restart)", n)
	}
	if str(a.stored(), "client_id") != newClient {
		t.Errorf("stored client_id %q, in use %q", str(a.stored(), "client_id"), newClient)
	}
	newKid := str(jwtPart(t, a.lastIDToken(), 0), "kid")
	if newKid == "" || newKid == oldKid {
		t.Errorf("ID token kid %q → %q, want the restarted provider's new key", oldKid, newKid)
	}
	jwksAfter := 0
	for _, c := range a.rec.find(http.MethodGet, a.endpoint("jwks_uri")) {
		if c.at.After(restarted) && strings.Contains(c.respBody, newKid) {
			jwksAfter++
		}
	}
	if jwksAfter == 0 {
		t.Errorf("the RP did not fetch the new JWKS (fetches before the restart: %d)", jwksBefore)
	}
	// Which check found out: an RFC 7592 read answered 401.
	found := false
	for _, c := range a.rec.all() {
		if c.method == http.MethodGet && c.at.After(restarted) && c.status == http.StatusUnauthorized && strings.Contains(c.url.Path, oldClient) {
			found = true
		}
	}
	if !found {
		t.Errorf("no RFC 7592 read of the old client answered 401 after the restart")
	}
}

// ---------------------------------------------------------------------------
// 8. Short-lived client secrets are renewed through RFC 7592.

func TestRPClientSecretRenewal(t *testing.T) {
	t.Parallel()
	const lifetime = 6 * time.Second
	op := interop.Start(t, interop.Options{SecretLifetime: lifetime})

	// A client with a secret: private_key_jwt, the default here, has none.
	withSecret := func(c *oidcrp.Config) { c.Metadata.TokenEndpointAuthMethod = "client_secret_basic" }

	// firstLogin signs in once and returns the stored credentials and the
	// original secret's expiry.
	firstLogin := func(t *testing.T, a *app) (map[string]any, time.Time) {
		t.Helper()
		a.expectSignedIn(newBrowser(t).navigate(a.URL+"/1"), "/1")
		first := a.stored()
		expf, _ := first["client_secret_expires_at"].(float64)
		exp := time.Unix(int64(expf), 0)
		if expf == 0 || time.Until(exp) > lifetime+time.Second || time.Until(exp) < lifetime/2 {
			t.Fatalf("client_secret_expires_at = %v (in %v), want about %v from now", expf, time.Until(exp), lifetime)
		}
		return first, exp
	}
	// renewed checks a renewal kept the client and replaced the secret.
	renewed := func(t *testing.T, a *app, first map[string]any, logins int) {
		t.Helper()
		now := a.stored()
		clientID := str(first, "client_id")
		if str(now, "client_id") != clientID || a.rp.Status().ClientID != clientID {
			t.Errorf("client_id changed: %s → stored %s, in use %s", clientID, str(now, "client_id"), a.rp.Status().ClientID)
		}
		if s := str(now, "client_secret"); s == "" || s == str(first, "client_secret") {
			t.Errorf("stored secret did not change")
		}
		if exp, _ := now["client_secret_expires_at"].(float64); exp <= first["client_secret_expires_at"].(float64) {
			t.Errorf("client_secret_expires_at %v → %v", first["client_secret_expires_at"], exp)
		}
		if n := len(a.registrations()); n != 1 {
			t.Errorf("%d registrations, want 1 (renewal through RFC 7592, not re-registration)", n)
		}
		regURI := str(first, "registration_client_uri")
		if n := len(a.rec.find(http.MethodPut, regURI)); n == 0 {
			t.Errorf("no RFC 7592 PUT to %s", regURI)
		}
		if n := a.logCount("client registration renewed"); n == 0 {
			t.Errorf("no renewal logged")
		}
		ex := a.codeExchanges()
		for _, c := range ex {
			if c.status != http.StatusOK {
				t.Errorf("code exchange at %s answered %d: %s", c.at.Format("15:04:05.000"), c.status, c.respBody)
			}
		}
		if len(ex) != logins {
			t.Errorf("%d code exchanges, want %d", len(ex), logins)
		}
		// The stored secret is the one the provider accepts now.
		if status, code := tokenProbe(t, a.endpoint("token_endpoint"), a.URL+callbackPath, clientID, str(now, "client_secret")); code != "invalid_grant" {
			t.Errorf("the stored secret at the token endpoint: status %d error %q, want invalid_grant (client accepted)", status, code)
		}
	}

	// Logins at the half-life and after the original expiry.
	t.Run("HalfLife", func(t *testing.T) {
		t.Parallel()
		a := newApp(t, op, withSecret)
		first, exp1 := firstLogin(t, a)

		// RenewBefore (5 min) exceeds the lifetime, so the RP renews at half
		// of it: between 3 and 2.5 s before expiry (the expiry has whole seconds).
		sleepUntil(t, exp1.Add(-2200*time.Millisecond), "past the secret's half-life")
		a.expectSignedIn(newBrowser(t).navigate(a.URL+"/2"), "/2")
		renewed(t, a, first, 2)

		sleepUntil(t, exp1.Add(500*time.Millisecond), "past the original secret's expiry")
		a.expectSignedIn(newBrowser(t).navigate(a.URL+"/3"), "/3")
		renewed(t, a, first, 3)
		// The original secret was superseded at the first PUT: the provider
		// now treats it as a wrong secret (401), not an expired one.
		if status, code := tokenProbe(t, a.endpoint("token_endpoint"), a.URL+callbackPath, str(first, "client_id"), str(first, "client_secret")); code != "invalid_client" {
			t.Errorf("the superseded original secret: status %d error %q, want invalid_client", status, code)
		} else {
			t.Logf("token endpoint, superseded original secret: HTTP %d %s", status, code)
		}
	})

	// No request between the first login and the expiry: the next login
	// renews an already expired secret.
	t.Run("IdlePastExpiry", func(t *testing.T) {
		t.Parallel()
		a := newApp(t, op, withSecret)
		first, exp1 := firstLogin(t, a)
		sleepUntil(t, exp1.Add(500*time.Millisecond), "past the secret's expiry, without any request")
		if status, code := tokenProbe(t, a.endpoint("token_endpoint"), a.URL+callbackPath, str(first, "client_id"), str(first, "client_secret")); code != "invalid_client" {
			t.Errorf("the expired secret: status %d error %q, want invalid_client", status, code)
		} else {
			t.Logf("token endpoint, expired current secret: HTTP %d %s", status, code)
		}
		a.expectSignedIn(newBrowser(t).navigate(a.URL+"/2"), "/2")
		renewed(t, a, first, 2)
	})
}

// ---------------------------------------------------------------------------
// 9. An issuer with a path component.

func TestRPIssuerWithPath(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{PathPrefix: "/oidc"})
	if !strings.HasSuffix(op.Issuer, "/oidc") {
		t.Fatalf("issuer %s", op.Issuer)
	}
	a := newApp(t, op, nil)
	b := newBrowser(t)
	p := b.navigate(a.URL + "/x")
	a.expectSignedIn(p, "/x")
	a.expectLoginTrip(p)
	if !p.passed(op.Issuer+"/") || !p.passed(op.InteractionURLPrefix) {
		t.Errorf("login did not go through %s: %v", op.Issuer, p.hops)
	}
	if iss := jwtPart(t, a.lastIDToken(), 1)["iss"]; iss != op.Issuer {
		t.Errorf("ID token iss %v", iss)
	}
	old := b.cookie(a.URL, sessionCookie)
	if old == nil {
		t.Fatal("no session cookie")
	}
	logoutChecks(t, a, b, old)
}

// ---------------------------------------------------------------------------
// Beyond the nine cases.

// The provider forgets the client after it issued the code: the token
// endpoint answers invalid_client, and the RP restarts the login once with a
// new registration instead of showing an error. A client authenticating
// with private_key_jwt first tries its assertion once more with the issuer
// as audience (which some providers want), then concludes the same.
func TestRPProviderForgetsClientDuringLogin(t *testing.T) {
	t.Parallel()
	for _, method := range []string{"client_secret_basic", "private_key_jwt"} {
		t.Run(method, func(t *testing.T) {
			t.Parallel()
			op := interop.Start(t, interop.Options{})
			a := newApp(t, op, func(c *oidcrp.Config) { c.Metadata.TokenEndpointAuthMethod = method })
			b := newBrowser(t)

			// Step through the provider until it sends the browser to the callback.
			req := b.request(http.MethodGet, a.URL+"/deep", nil)
			var callback string
			for range 10 {
				p := b.send(req)
				loc, err := req.URL.Parse(p.header.Get("Location"))
				if err != nil || p.header.Get("Location") == "" {
					t.Fatalf("%s: status %d without a redirect", req.URL, p.status)
				}
				if strings.HasPrefix(loc.String(), a.URL+callbackPath+"?") {
					callback = loc.String()
					break
				}
				req = b.request(http.MethodGet, loc.String(), nil)
			}
			if callback == "" {
				t.Fatal("the provider never redirected to the callback")
			}
			oldClient := a.rp.Status().ClientID

			op.Restart(t)
			p := b.navigate(callback)
			a.expectSignedIn(p, "/deep")
			if !p.passed(a.endpoint("authorization_endpoint")+"?") || !p.passed(op.InteractionURLPrefix) {
				t.Errorf("the login was not restarted at the provider: %v", p.hops)
			}
			if c := a.rp.Status().ClientID; c == oldClient || c == "" {
				t.Errorf("client_id %q → %q, want a new one", oldClient, c)
			}
			if m := a.rp.Status().AuthMethod; m != method {
				t.Errorf("Status().AuthMethod = %q, want %q", m, method)
			}
			ex := a.codeExchanges()
			refused := 1
			if method == "private_key_jwt" {
				refused = 2
			}
			ok := len(ex) == refused+1 && ex[refused].status == http.StatusOK
			for _, c := range ex[:min(refused, len(ex))] {
				ok = ok && c.status == http.StatusUnauthorized && strings.Contains(c.respBody, "invalid_client")
			}
			if !ok {
				t.Fatalf("code exchanges: %d, want %d refused with 401 invalid_client, then one accepted", len(ex), refused)
			}
			if method == "private_key_jwt" {
				aud := func(c providerCall) any { return jwtPart(t, c.form().Get("client_assertion"), 1)["aud"] }
				if aud(ex[0]) != a.endpoint("token_endpoint") || aud(ex[1]) != op.Issuer || aud(ex[2]) != a.endpoint("token_endpoint") {
					t.Errorf("assertion audiences %v, %v, %v; want the token endpoint, the issuer, the token endpoint", aud(ex[0]), aud(ex[1]), aud(ex[2]))
				}
			}
			if n := len(a.registrations()); n != 2 {
				t.Errorf("%d registrations, want 2", n)
			}
		})
	}
}

// With Config.SessionLifetime longer than the ID token's, logout sends an
// expired id_token_hint: the provider accepts it.
func TestRPLogoutWithExpiredIDTokenHint(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{IDTokenTTL: 2 * time.Second})
	a := newApp(t, op, func(c *oidcrp.Config) { c.SessionLifetime = time.Hour })
	b := newBrowser(t)
	a.expectSignedIn(b.navigate(a.URL+"/"), "/")
	exp, _ := jwtPart(t, a.lastIDToken(), 1)["exp"].(float64)
	sleepUntil(t, time.Unix(int64(exp), 0).Add(200*time.Millisecond), "until the ID token expires")
	p := b.navigate(a.URL + "/still")
	a.expectSignedIn(p, "/still")
	if len(p.hops) != 1 {
		t.Errorf("session did not outlive the ID token: %v", p.hops)
	}
	logoutChecks(t, a, b, b.cookie(a.URL, sessionCookie))
}

// TestRPLogoutAfterReregistration: after the RP replaced its registration
// (here because the provider restarted and forgot the client), a user whose
// session dates from the old client signs out. The provider would refuse an
// id_token_hint issued to the old client ("unrecognized id_token_hint
// audience", on its own error page), so the RP sends client_id instead and
// the user comes back to the application's "signed out" page.
func TestRPLogoutAfterReregistration(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{})
	a := newApp(t, op, nil)
	alice := newBrowser(t)
	a.expectSignedIn(alice.navigate(a.URL+"/"), "/")
	oldClient := a.rp.Status().ClientID

	op.Restart(t)
	bob := newBrowser(t)
	if p := bob.navigate(a.URL + "/"); p.status == http.StatusOK && p.url == a.URL+"/" {
		t.Fatalf("bob signed in at once; expected the first attempt to fail at the provider")
	}
	a.expectSignedIn(bob.navigate(a.URL+"/"), "/")
	if a.rp.Status().ClientID == oldClient {
		t.Fatalf("the RP did not re-register")
	}

	// alice's session (from the old client) is still valid at the app.
	req := alice.request(http.MethodPost, a.URL+"/logout", strings.NewReader(""))
	req.Header.Set("Origin", a.URL)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	p := alice.follow(req)
	if names := alice.appCookies(a.URL); slices.Contains(names, sessionCookie) {
		t.Errorf("session cookie still present after logout")
	}
	if p.status != http.StatusOK || !strings.HasPrefix(p.url, a.URL+"/logout?state=") || !strings.Contains(p.body, "Signed out") {
		hint := ""
		for _, h := range p.hops {
			if u, err := url.Parse(h); err == nil && u.Query().Get("id_token_hint") != "" {
				hint = fmt.Sprint(jwtPart(t, u.Query().Get("id_token_hint"), 1)["aud"])
			}
		}
		t.Errorf("logout after re-registration ended at the provider (status %d at %.80s…) instead of the app's signed-out page; "+
			"the RP sent an id_token_hint for aud %s while it uses client %s (provider log: %q)",
			p.status, p.url, hint, a.rp.Status().ClientID, lastLine(op.Logs(), "end_session.error"))
	}
}

func lastLine(logs, prefix string) string {
	out := ""
	for _, l := range strings.Split(logs, "\n") {
		if strings.HasPrefix(l, prefix) {
			out = l
		}
	}
	return out
}

// TestRPSharedStoreRotatedRegistrationToken: two replicas share one
// credential store during a rolling deploy that changes the client metadata
// (here the client name). The new replica updates the registration in place
// (RFC 7592 PUT); oidc-provider, as RFC 7592 §2.2 allows, rotates the
// registration access token. The old replica's next check (a browser
// retrying a login) reads the registration with its old token and gets 401;
// it must retry with the token now in the store rather than conclude that the
// provider forgot the client, so no second client is registered and none is
// orphaned. KeepRegistrationAccessToken (no rotation) is the control.
func TestRPSharedStoreRotatedRegistrationToken(t *testing.T) {
	t.Parallel()
	for _, keep := range []bool{false, true} {
		name := "RotatingToken"
		if keep {
			name = "KeptToken"
		}
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			op := interop.Start(t, interop.Options{KeepRegistrationAccessToken: keep})
			disc := discover(t, op)
			store := new(oidcrp.MemoryStore)
			srv := httptest.NewUnstartedServer(nil)
			appURL := "http://" + srv.Listener.Addr().String()
			logs := &lockedBuffer{}
			rec := &recorder{base: http.DefaultTransport.(*http.Transport).Clone()}
			replica := func(clientName string) *oidcrp.RP {
				rp, err := oidcrp.New(oidcrp.Config{
					Issuer: op.Issuer, RedirectURL: appURL + callbackPath, Store: store,
					Metadata:   oidcrp.ClientMetadata{ClientName: clientName},
					Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("replica", clientName),
					HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: rec},
				})
				if err != nil {
					t.Fatal(err)
				}
				return rp
			}
			v1, v2 := replica("app v1"), replica("app v2")
			var toV2 atomic.Bool // the load balancer
			ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = io.WriteString(w, "ok") })
			h1, h2 := v1.Require(ok), v2.Require(ok)
			srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if toV2.Load() {
					h2.ServeHTTP(w, r)
				} else {
					h1.ServeHTTP(w, r)
				}
			})
			srv.Start()
			t.Cleanup(func() {
				srv.Close()
				rec.base.CloseIdleConnections()
				if t.Failed() {
					t.Logf("replicas' log:\n%s\nrequests to the provider:\n%s", logs, rec.summary())
				}
			})

			if p := newBrowser(t).navigate(appURL + "/"); p.status != http.StatusOK || p.body != "ok" {
				t.Fatalf("login through v1: status %d at %s", p.status, p.url)
			}
			client := v1.Status().ClientID
			toV2.Store(true)
			ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
			defer cancel()
			if err := v2.Ready(ctx); err != nil || v2.Status().ClientID != client {
				t.Fatalf("v2 Ready: %v, client %q (v1 registered %q)", err, v2.Status().ClientID, client)
			}
			if n := len(rec.find(http.MethodPut, str(disc, "registration_endpoint")+"/"+client)); n != 1 {
				t.Fatalf("v2 did not update the registration in place (%d PUTs)", n)
			}

			// Back on v1: a user whose first attempt never came back tries again.
			toV2.Store(false)
			b := newBrowser(t)
			if p := b.send(b.request(http.MethodGet, appURL+"/", nil)); p.status != http.StatusFound || !b.pendingLogin(appURL) {
				t.Fatalf("abandoned attempt: status %d", p.status)
			}
			if p := b.navigate(appURL + "/"); p.status != http.StatusOK || p.body != "ok" {
				t.Fatalf("second attempt through v1: status %d at %s", p.status, p.url)
			}

			regs := rec.find(http.MethodPost, str(disc, "registration_endpoint"))
			var stored map[string]any
			if raw, err := store.Load(ctx, "oidcrp:client"); err == nil {
				_ = json.Unmarshal(raw, &stored)
			}
			if len(regs) != 1 || v1.Status().ClientID != client || str(stored, "client_id") != client {
				t.Errorf("after v2's in-place update, v1 took the rotated registration access token's 401 for a forgotten client: "+
					"%d registrations (want 1), v1 uses %q, v2 uses %q, store holds %q; client %q is left registered and no longer stored",
					len(regs), v1.Status().ClientID, v2.Status().ClientID, str(stored, "client_id"), client)
			}
		})
	}
}

// TestRPDecommission deletes the registration at the real provider (RFC 7592
// DELETE) and in the store; the provider then rejects the old client, and
// the next login registers anew.
func TestRPDecommission(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{})
	// The probe below authenticates with the secret; keyauth_test.go
	// decommissions a private_key_jwt client.
	a := newApp(t, op, func(c *oidcrp.Config) { c.Metadata.TokenEndpointAuthMethod = "client_secret_basic" })
	a.expectSignedIn(newBrowser(t).navigate(a.URL+"/"), "/")
	raw, err := a.store.Load(context.Background(), "oidcrp:client")
	if err != nil {
		t.Fatal(err)
	}
	var stored map[string]any
	_ = json.Unmarshal(raw, &stored)
	old := str(stored, "client_id")

	if err := a.rp.Decommission(context.Background()); err != nil {
		t.Fatal(err)
	}
	if dels := a.rec.find(http.MethodDelete, str(stored, "registration_client_uri")); len(dels) != 1 || dels[0].status != http.StatusNoContent {
		t.Fatalf("RFC 7592 DELETE: %d calls", len(dels))
	}
	if _, err := a.store.Load(context.Background(), "oidcrp:client"); !errors.Is(err, oidcrp.ErrNotFound) {
		t.Errorf("credentials still stored: %v", err)
	}
	if status, code := tokenProbe(t, a.endpoint("token_endpoint"), a.URL+callbackPath, old, str(stored, "client_secret")); code != "invalid_client" {
		t.Errorf("the provider still knows the decommissioned client: %d %s", status, code)
	}
	a.expectSignedIn(newBrowser(t).navigate(a.URL+"/"), "/")
	if a.rp.Status().ClientID == old || len(a.registrations()) != 2 {
		t.Errorf("after decommission: client %s, %d registrations", a.rp.Status().ClientID, len(a.registrations()))
	}
}
