package redisstore

import (
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/internal/devop"
	gorillaredis "github.com/rbcervilla/redisstore/v9"
)

// sessionReplica is one replica of an application keeping its sessions
// server-side in Redis, through a gorilla sessions.Store from the
// ecosystem, and its credentials in a Store of this package.
type sessionReplica struct {
	rp      *oidcrp.RP
	handler http.Handler
}

func newSessionReplica(t *testing.T, opSrv *httptest.Server, appURL, prefix string) *sessionReplica {
	t.Helper()
	return newSessionReplicaWith(t, opSrv, opSrv.Client(), appURL, prefix)
}

func newSessionReplicaWith(t *testing.T, opSrv *httptest.Server, client *http.Client, appURL, prefix string) *sessionReplica {
	t.Helper()
	sessions, err := gorillaredis.NewRedisStore(t.Context(), newClient(t))
	if err != nil {
		t.Fatal(err)
	}
	sessions.KeyPrefix(prefix + "session:")
	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:       opSrv.URL,
		RedirectURL:  appURL + "/auth/callback",
		Store:        New(newClient(t), Options{Prefix: prefix}),
		SessionStore: sessions,
		KeepTokens:   true,
		HTTPClient:   client,
		Logger:       slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return &sessionReplica{rp: rp, handler: rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcrp.UserFromContext(r.Context())
		_ = json.NewEncoder(w).Encode(map[string]string{"sub": u.Subject, "access_token": u.AccessToken()})
	}))}
}

// ask sends an API request carrying only the session cookie c to the
// replica, as a load balancer would route it there.
func (s *sessionReplica) ask(t *testing.T, c *http.Cookie) (int, map[string]string) {
	t.Helper()
	req := httptest.NewRequest(http.MethodGet, "https://app.example/api", nil)
	req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	w := httptest.NewRecorder()
	s.handler.ServeHTTP(w, req)
	var out map[string]string
	_ = json.Unmarshal(w.Body.Bytes(), &out)
	return w.Code, out
}

// TestServerSideSessionsInRedis: two replicas share a Redis-backed gorilla
// store (github.com/rbcervilla/redisstore) for sessions and this package's
// Store for credentials. A login at one is a session at both, a refresh
// (KeepTokens, short access tokens) keeps the record, and a logout at one
// is refused at the other.
func TestServerSideSessionsInRedis(t *testing.T) {
	t.Parallel()
	const accessLifetime = 2 * time.Second
	op, opSrv := newOP(t, devop.Options{AutoLogin: true, IDTokenLifetime: time.Hour, AccessTokenLifetime: accessLifetime})
	prefix := newPrefix(t)
	app := httptest.NewUnstartedServer(nil)
	app.StartTLS()
	t.Cleanup(app.Close)
	a := newSessionReplica(t, opSrv, app.URL, prefix)
	b := newSessionReplica(t, opSrv, app.URL, prefix)
	app.Config.Handler = a.handler
	records := func() []string {
		keys, err := newClient(t).Keys(t.Context(), prefix+"session:*").Result()
		if err != nil {
			t.Fatal(err)
		}
		return keys
	}

	browser, cookie := signIn(t, app, opSrv)
	if n := op.Stats().Token; n != 1 {
		t.Errorf("%d token requests for one login, want 1", n)
	}
	keys := records()
	if len(keys) != 1 {
		t.Fatalf("%d session records in Redis after login, want 1", len(keys))
	}
	// A refreshable session may last 30 days: so does its record.
	if ttl := newClient(t).TTL(t.Context(), keys[0]).Val(); ttl < 29*24*time.Hour {
		t.Errorf("session record expires in %v", ttl)
	}
	status, first := b.ask(t, cookie)
	if status != http.StatusOK || first["sub"] != "demo-user" || first["access_token"] == "" {
		t.Fatalf("replica B, after the login at A: %d %v", status, first)
	}

	// The access token expires: replica A refreshes it and rewrites the record.
	time.Sleep(accessLifetime + 100*time.Millisecond)
	status, refreshed := a.ask(t, cookie)
	if status != http.StatusOK || refreshed["access_token"] == first["access_token"] {
		t.Fatalf("replica A after the access token expired: %d %v", status, refreshed)
	}
	if form, _ := op.LastTokenRequest(); form.Get("grant_type") != "refresh_token" {
		t.Errorf("last token request: %v", form)
	}
	if status, out := b.ask(t, cookie); status != http.StatusOK || out["access_token"] != refreshed["access_token"] {
		t.Errorf("replica B after the refresh at A: %d %v, want the refreshed token", status, out)
	}
	if n := len(records()); n != 1 {
		t.Errorf("%d session records after the refresh, want 1", n)
	}

	// Logout at A; B refuses the session, and nothing brings it back.
	signOut(t, browser, app)
	if status, out := b.ask(t, cookie); status != http.StatusUnauthorized {
		t.Errorf("replica B after the logout at A: %d %v, want 401", status, out)
	}
	time.Sleep(accessLifetime + 100*time.Millisecond) // a refresh would be due
	if status, _ := b.ask(t, cookie); status != http.StatusUnauthorized {
		t.Errorf("replica B, later: %d, want 401", status)
	}
	if status, _ := a.ask(t, cookie); status != http.StatusUnauthorized {
		t.Errorf("replica A after its logout: %d, want 401", status)
	}
	if n := len(records()); n != 0 {
		t.Errorf("%d session records after the logout, want 0", n)
	}
}

// signIn signs a new browser in at app, through every redirect, and returns
// the browser and its session cookie.
func signIn(t *testing.T, app, opSrv *httptest.Server) (*http.Client, *http.Cookie) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Transport: opSrv.Client().Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	get := func(target string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest(http.MethodGet, target, nil)
		req.Header.Set("Accept", "text/html")
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		return resp
	}
	resp := get(app.URL + "/")
	for i := 0; i < 10 && resp.StatusCode/100 == 3; i++ {
		resp.Body.Close()
		next, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
		resp = get(next.String())
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || !strings.Contains(string(body), "demo-user") {
		t.Fatalf("login ended with %d: %s", resp.StatusCode, body)
	}
	u, _ := url.Parse(app.URL)
	for _, c := range jar.Cookies(u) {
		if c.Name == "__Host-oidcrp" {
			return browser, c
		}
	}
	t.Fatalf("no session cookie; cookies: %v", jar.Cookies(u))
	return nil, nil
}

// signOut posts the browser's logout to app. It may run outside the
// test's goroutine: it reports failures with Errorf.
func signOut(t *testing.T, browser *http.Client, app *httptest.Server) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodPost, app.URL+"/logout", nil)
	req.Header.Set("Origin", app.URL)
	resp, err := browser.Do(req)
	if err != nil {
		t.Errorf("logout: %v", err)
		return
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		t.Errorf("logout: %d", resp.StatusCode)
	}
}

// onTokenRequest runs hook before the next token request it carries.
type onTokenRequest struct {
	base http.RoundTripper
	hook func()
}

func (o *onTokenRequest) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/token" && o.hook != nil {
		hook := o.hook
		o.hook = nil
		hook()
	}
	return o.base.RoundTrip(r)
}

// TestRefreshInFlightDoesNotUndoLogoutInRedis: replica B refreshes a
// session while replica A logs it out. The refreshed session is not
// written back to Redis, and B refuses it.
func TestRefreshInFlightDoesNotUndoLogoutInRedis(t *testing.T) {
	t.Parallel()
	const accessLifetime = 2 * time.Second
	_, opSrv := newOP(t, devop.Options{AutoLogin: true, IDTokenLifetime: time.Hour, AccessTokenLifetime: accessLifetime})
	prefix := newPrefix(t)
	app := httptest.NewUnstartedServer(nil)
	app.StartTLS()
	t.Cleanup(app.Close)
	a := newSessionReplica(t, opSrv, app.URL, prefix)
	app.Config.Handler = a.handler
	slow := &onTokenRequest{base: opSrv.Client().Transport}
	b := newSessionReplicaWith(t, opSrv, &http.Client{Transport: slow}, app.URL, prefix)
	browser, cookie := signIn(t, app, opSrv)
	if status, _ := b.ask(t, cookie); status != http.StatusOK {
		t.Fatalf("replica B after the login: %d", status)
	}
	time.Sleep(accessLifetime + 100*time.Millisecond)
	slow.hook = func() { signOut(t, browser, app) } // while B's refresh is in flight
	if status, out := b.ask(t, cookie); status != http.StatusUnauthorized {
		t.Errorf("replica B, whose refresh was in flight during the logout: %d %v, want 401", status, out)
	}
	if slow.hook != nil {
		t.Fatal("replica B did not refresh")
	}
	keys, err := newClient(t).Keys(t.Context(), prefix+"session:*").Result()
	if err != nil || len(keys) != 0 {
		t.Errorf("session records after the logout: %v %v", keys, err)
	}
	for _, r := range []*sessionReplica{a, b} {
		if status, _ := r.ask(t, cookie); status != http.StatusUnauthorized {
			t.Errorf("after the logout: %d, want 401", status)
		}
	}
}
