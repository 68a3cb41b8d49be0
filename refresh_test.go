package oidcrp

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// apiGet sends a non-navigation request with the browser's cookies and
// returns the status, the decoded body and the response.
func (e *testEnv) apiGet(path string) (int, map[string]any, *http.Response) {
	e.t.Helper()
	resp := e.get(e.app.URL+path, "application/json")
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out map[string]any
	_ = json.Unmarshal(b, &out)
	return resp.StatusCode, out, resp
}

func TestKeepTokensRefreshesExpiredSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute, AccessTokenLifetime: 5 * time.Minute}, Config{KeepTokens: true})
	first := e.login("/")
	at1, _ := first["access_token"].(string)
	if at1 == "" {
		t.Fatal("no access token kept")
	}
	// The access token expires first: refreshed before the session ends.
	e.clock.Advance(5 * time.Minute)
	status, out, resp := e.apiGet("/api")
	if status != http.StatusOK || out["sub"] != "demo-user" || out["access_token"] == at1 || out["access_token"] == "" {
		t.Fatalf("after access token expiry: %d %v", status, out)
	}
	if setCookieNamed(resp, "oidcrp") == nil {
		t.Error("refreshed session not written back")
	}
	if form, _ := e.op.LastTokenRequest(); form.Get("grant_type") != "refresh_token" {
		t.Errorf("last token request: %v", form)
	}
	// Past the first ID token's expiry the refreshed session lives on.
	e.clock.Advance(6 * time.Minute)
	if status, out, _ := e.apiGet("/api"); status != http.StatusOK || out["sub"] != "demo-user" {
		t.Fatalf("after ID token expiry: %d %v", status, out)
	}
}

func TestKeepTokensConcurrentRequestsRefreshOnce(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute}, Config{KeepTokens: true})
	e.login("/")
	old := e.cookie("oidcrp")
	before := e.op.Stats().Token
	e.clock.Advance(11 * time.Minute)
	h := e.app.Config.Handler
	var wg sync.WaitGroup
	codes := make([]int, 20)
	for i := range codes {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodGet, e.app.URL+"/api", nil)
			req.AddCookie(&http.Cookie{Name: old.Name, Value: old.Value})
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			codes[i] = w.Code
		}()
	}
	wg.Wait()
	for i, c := range codes {
		if c != http.StatusOK {
			t.Errorf("request %d: %d", i, c)
		}
	}
	if n := e.op.Stats().Token - before; n != 1 {
		t.Errorf("%d token requests for 20 concurrent requests of one session, want 1", n)
	}
}

func TestKeepTokensRefreshRefusedEndsSession(t *testing.T) {
	t.Parallel()
	cases := map[string]struct {
		opts   devop.Options
		before func(*devop.Provider)
	}{
		"client forgotten": {devop.Options{IDTokenLifetime: 10 * time.Minute}, func(op *devop.Provider) { op.ForgetClients() }},
		"another subject": {devop.Options{IDTokenLifetime: 10 * time.Minute, IDToken: func(c, h map[string]any) {
			if _, ok := c["nonce"]; !ok { // refreshed ID tokens carry no nonce
				c["sub"] = "someone-else"
			}
		}}, func(*devop.Provider) {}},
		"another nonce": {devop.Options{IDTokenLifetime: 10 * time.Minute, IDToken: func(c, h map[string]any) {
			if _, ok := c["nonce"]; !ok {
				c["nonce"] = "not-the-original"
			}
		}}, func(*devop.Provider) {}},
		"another auth_time": {devop.Options{IDTokenLifetime: 10 * time.Minute, IDToken: func(c, h map[string]any) {
			if _, ok := c["nonce"]; !ok {
				c["auth_time"] = 12345
			}
		}}, func(*devop.Provider) {}},
		"extra audience": {devop.Options{IDTokenLifetime: 10 * time.Minute, IDToken: func(c, h map[string]any) {
			if _, ok := c["nonce"]; !ok {
				c["aud"] = []any{c["aud"], "someone-else"}
			}
		}}, func(*devop.Provider) {}},
	}
	for name, tc := range cases {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts, Config{KeepTokens: true})
			e.login("/")
			tc.before(e.op)
			e.clock.Advance(11 * time.Minute)
			status, _, resp := e.apiGet("/api")
			if status != http.StatusUnauthorized {
				t.Fatalf("refused refresh: %d, want 401", status)
			}
			if c := setCookieNamed(resp, "oidcrp"); c == nil || c.MaxAge >= 0 {
				t.Error("session cookie not cleared")
			}
			if e.handled.Load() != 1 {
				t.Error("the handler ran with a session that could not be refreshed")
			}
		})
	}
}

func TestSessionLifetimeBoundsRefresh(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute}, Config{KeepTokens: true, SessionLifetime: 30 * time.Minute})
	e.login("/")
	e.clock.Advance(11 * time.Minute)
	if status, _, _ := e.apiGet("/api"); status != http.StatusOK {
		t.Fatalf("within SessionLifetime: %d", status)
	}
	e.clock.Advance(20 * time.Minute)
	if status, _, _ := e.apiGet("/api"); status != http.StatusUnauthorized {
		t.Fatalf("past SessionLifetime: %d, want 401", status)
	}
}

// TestKeepTokensTransientFailureKeepsSession: a provider that cannot answer
// a refresh does not end the session; the next request refreshes.
func TestKeepTokensTransientFailureKeepsSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute, AccessTokenLifetime: 5 * time.Minute}, Config{KeepTokens: true})
	e.login("/")
	up := e.opSrv.Config.Handler
	e.opSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	})
	e.clock.Advance(5 * time.Minute) // the access token expired, the session has not
	if status, _, resp := e.apiGet("/api"); status != http.StatusOK || setCookieNamed(resp, "oidcrp") != nil {
		t.Fatalf("refresh failing at a down provider: %d", status)
	}
	e.opSrv.Config.Handler = up
	if status, out, _ := e.apiGet("/api"); status != http.StatusOK || out["sub"] != "demo-user" {
		t.Fatalf("after the provider came back: %d", status)
	}
	if form, _ := e.op.LastTokenRequest(); form.Get("grant_type") != "refresh_token" {
		t.Errorf("no refresh after recovery: %v", form)
	}
}

// TestLogoutRevokesRefreshableSession: after logout, the old cookie of a
// refreshable session stays refused after its ID token would have expired
// and after other logouts.
func TestLogoutRevokesRefreshableSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute}, Config{KeepTokens: true})
	e.login("/")
	old := e.cookie("oidcrp")
	if status := e.replay("/api", old); status != http.StatusOK {
		t.Fatalf("the session cookie, replayed before logout: %d, want 200", status)
	}
	e.postLogout()
	e.clock.Advance(11 * time.Minute)
	// Someone else logs in and out, which prunes expired revocations.
	e.browser.Jar, _ = cookiejar.New(nil)
	e.login("/")
	e.postLogout()
	if status := e.replay("/api", old); status != http.StatusUnauthorized {
		t.Fatalf("logged-out refreshable session replayed: %d, want 401", status)
	}
}
