package oidcrp

import (
	"encoding/json"
	"errors"
	"net/http"
	"net/http/httptest"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/sessions"
	"github.com/oidcrp/oidcrp/internal/devop"
)

// callResult is what tokensApp answers: per call through the user's
// client, the userinfo status and subject, or the error.
type callResult struct {
	Statuses []int    `json:"statuses"`
	Subs     []string `json:"subs"`
	Errs     []string `json:"errs"`
	Ended    bool     `json:"ended"` // an error was ErrSessionEnded
}

// callUserinfo makes n concurrent calls of the provider's userinfo endpoint
// through the user's client of r.
func callUserinfo(e *testEnv, r *http.Request, n int) callResult {
	var res callResult
	hc, err := UserClient(r.Context())
	if err != nil {
		return callResult{Errs: []string{err.Error()}, Ended: errors.Is(err, ErrSessionEnded)}
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	for range n {
		wg.Go(func() {
			resp, err := hc.Get(e.op.Issuer() + "/userinfo")
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				res.Errs = append(res.Errs, err.Error())
				res.Ended = res.Ended || errors.Is(err, ErrSessionEnded)
				return
			}
			defer resp.Body.Close()
			var claims struct {
				Sub string `json:"sub"`
			}
			_ = json.NewDecoder(resp.Body).Decode(&claims)
			res.Statuses = append(res.Statuses, resp.StatusCode)
			res.Subs = append(res.Subs, claims.Sub)
		})
	}
	wg.Wait()
	return res
}

// tokensApp serves /call under Require: it advances the clock by the
// "advance" query parameter, starts the response first when "started" is
// set, then makes "n" (default 1) concurrent userinfo calls as the user.
func tokensApp(e *testEnv, rp *RP) http.Handler {
	mux := http.NewServeMux()
	mux.Handle("/call", rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		q := r.URL.Query()
		if d, err := time.ParseDuration(q.Get("advance")); err == nil {
			e.clock.Advance(d)
		}
		n, _ := strconv.Atoi(q.Get("n"))
		if q.Has("started") {
			w.Header().Set("Content-Type", "application/json")
			w.WriteHeader(http.StatusOK)
		}
		res := callUserinfo(e, r, max(n, 1))
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(res)
	})))
	mux.Handle("/", e.handler(rp))
	return mux
}

// call sends an API request for /call with the query and returns the
// result and the response.
func (e *testEnv) call(query string) (callResult, *http.Response) {
	e.t.Helper()
	resp := e.get(e.app.URL+"/call?"+query, "application/json")
	defer resp.Body.Close()
	var res callResult
	if resp.StatusCode == http.StatusOK {
		if err := json.NewDecoder(resp.Body).Decode(&res); err != nil {
			e.t.Fatal(err)
		}
	}
	return res, resp
}

func newTokensEnv(t *testing.T, opts devop.Options, cfg Config) *testEnv {
	t.Helper()
	e := newEnv(t, opts, cfg)
	e.app.Config.Handler = tokensApp(e, e.rp) // before the first request
	return e
}

func allOK(t *testing.T, res callResult, n int) {
	t.Helper()
	if len(res.Errs) > 0 || len(res.Statuses) != n {
		t.Fatalf("calls: %+v", res)
	}
	for i, s := range res.Statuses {
		if s != http.StatusOK || res.Subs[i] != "demo-user" {
			t.Fatalf("call %d: %d %q", i, s, res.Subs[i])
		}
	}
}

func TestUserClientSendsAccessToken(t *testing.T) {
	t.Parallel()
	e := newTokensEnv(t, devop.Options{}, Config{KeepTokens: true})
	e.login("/")
	before := e.op.Stats()
	res, resp := e.call("")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("status %d", resp.StatusCode)
	}
	allOK(t, res, 1)
	if n := e.op.Stats().UserInfo - before.UserInfo; n != 1 {
		t.Errorf("%d userinfo requests, want 1", n)
	}
	if e.op.Stats().Token != before.Token {
		t.Error("a fresh access token was refreshed")
	}

	// The token source gives the session's access token.
	req := httptest.NewRequest(http.MethodGet, e.app.URL+"/x", nil)
	c := e.cookie("oidcrp")
	req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	var got, want string
	e.rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := UserFromContext(r.Context())
		ts, err := UserTokenSource(r.Context())
		if err != nil {
			t.Fatal(err)
		}
		tok, err := ts.Token()
		if err != nil {
			t.Fatal(err)
		}
		if tok.RefreshToken != "" || tok.TokenType != "Bearer" || tok.Expiry.IsZero() {
			t.Errorf("token %+v", tok)
		}
		got, want = tok.AccessToken, u.AccessToken()
	})).ServeHTTP(httptest.NewRecorder(), req)
	if got == "" || got != want {
		t.Errorf("token source gave %q, the session has %q", got, want)
	}
}

func TestUserTokenSourceErrors(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	var errs []error
	h := func(w http.ResponseWriter, r *http.Request) {
		_, err := UserTokenSource(r.Context())
		_, err2 := UserClient(r.Context())
		errs = append(errs, err, err2)
	}
	e.app.Config.Handler = func() http.Handler {
		mux := http.NewServeMux()
		mux.Handle("/opt", e.rp.Optional(http.HandlerFunc(h)))
		mux.Handle("/", e.rp.Require(http.HandlerFunc(h)))
		return mux
	}()
	e.get(e.app.URL+"/opt", "").Body.Close() // nobody signed in
	e.follow(e.get(e.app.URL+"/", html))     // signed in, without KeepTokens
	if len(errs) != 4 || !errors.Is(errs[0], ErrNoUser) || !errors.Is(errs[1], ErrNoUser) ||
		!errors.Is(errs[2], ErrNoTokens) || !errors.Is(errs[3], ErrNoTokens) {
		t.Fatalf("errors %v", errs)
	}
	if _, err := UserTokenSource(t.Context()); !errors.Is(err, ErrNoUser) {
		t.Errorf("outside a request: %v", err)
	}
}

// TestUserClientRefreshesOnce: an access token that expires while handlers
// run is refreshed once for concurrent calls of one request and of
// concurrent requests of the session, and the refreshed session is written
// back.
func TestUserClientRefreshesOnce(t *testing.T) {
	t.Parallel()
	e := newTokensEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute, AccessTokenLifetime: 5 * time.Minute}, Config{KeepTokens: true})
	e.login("/")
	old := e.cookie("oidcrp")
	before := e.op.Stats().Token
	res, resp := e.call("advance=5m&n=8")
	allOK(t, res, 8)
	if n := e.op.Stats().Token - before; n != 1 {
		t.Errorf("%d token requests for 8 concurrent calls, want 1", n)
	}
	c := setCookieNamed(resp, "oidcrp")
	if c == nil || c.Value == old.Value {
		t.Fatal("refreshed session not written back")
	}
	// The new cookie opens, and carries fresh tokens: no refresh.
	res, _ = e.call("")
	allOK(t, res, 1)
	if n := e.op.Stats().Token - before; n != 1 {
		t.Errorf("%d token requests after the refreshed session came back, want 1", n)
	}

	// Concurrent requests of the session (one cookie), whose handlers all
	// run before the access token expires, then call: one refresh.
	now := e.cookie("oidcrp")
	before = e.op.Stats().Token
	const requests = 6
	var arrived sync.WaitGroup
	arrived.Add(requests)
	var once sync.Once
	app := e.rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		arrived.Done()
		arrived.Wait()
		once.Do(func() { e.clock.Advance(5 * time.Minute) })
		res := callUserinfo(e, r, 3)
		_ = json.NewEncoder(w).Encode(res)
	}))
	var wg sync.WaitGroup
	results := make([]callResult, requests)
	for i := range requests {
		wg.Go(func() {
			req := httptest.NewRequest(http.MethodGet, e.app.URL+"/api", nil)
			req.AddCookie(&http.Cookie{Name: now.Name, Value: now.Value})
			w := httptest.NewRecorder()
			app.ServeHTTP(w, req)
			_ = json.Unmarshal(w.Body.Bytes(), &results[i])
		})
	}
	wg.Wait()
	for _, res := range results {
		allOK(t, res, 3)
	}
	if n := e.op.Stats().Token - before; n != 1 {
		t.Errorf("%d token requests for %d concurrent requests of a session, want 1", n, requests)
	}
}

// TestUserClientRefreshAfterResponseStarted: tokens refreshed once the
// response started cannot reach the cookie; the process keeps them, so the
// next request does not refresh again.
func TestUserClientRefreshAfterResponseStarted(t *testing.T) {
	t.Parallel()
	e := newTokensEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute, AccessTokenLifetime: 5 * time.Minute}, Config{KeepTokens: true})
	e.login("/")
	before := e.op.Stats().Token
	res, resp := e.call("advance=5m&started=1")
	allOK(t, res, 1)
	if setCookieNamed(resp, "oidcrp") != nil {
		t.Error("a Set-Cookie after the response started")
	}
	if n := e.op.Stats().Token - before; n != 1 {
		t.Fatalf("%d token requests, want 1", n)
	}
	res, _ = e.call("")
	allOK(t, res, 1)
	if n := e.op.Stats().Token - before; n != 1 {
		t.Errorf("%d token requests, want 1: the refreshed session was not kept", n)
	}
}

// TestUserClientServerSideSession: with a SessionStore the refreshed
// tokens go to the record, whenever they are refreshed.
func TestUserClientServerSideSession(t *testing.T) {
	t.Parallel()
	store := sessions.NewFilesystemStore(t.TempDir(), []byte("0123456789abcdef0123456789abcdef"))
	e := newTokensEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute, AccessTokenLifetime: 5 * time.Minute},
		Config{KeepTokens: true, SessionStore: store})
	e.login("/")
	before := e.op.Stats().Token
	res, _ := e.call("advance=5m&started=1&n=4")
	allOK(t, res, 4)
	res, _ = e.call("")
	allOK(t, res, 1)
	if n := e.op.Stats().Token - before; n != 1 {
		t.Errorf("%d token requests, want 1: the record was not rewritten", n)
	}
}

// TestUserClientRefusedRefreshEndsSession: a refresh the provider refuses
// fails the calls with ErrSessionEnded and ends the session.
func TestUserClientRefusedRefreshEndsSession(t *testing.T) {
	t.Parallel()
	e := newTokensEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute, AccessTokenLifetime: 5 * time.Minute}, Config{KeepTokens: true})
	e.login("/")
	e.op.ForgetClients()
	before := e.op.Stats().Token
	res, resp := e.call("advance=5m&n=3")
	if !res.Ended || len(res.Statuses) != 0 || len(res.Errs) != 3 {
		t.Fatalf("calls after a refused refresh: %+v", res)
	}
	if n := e.op.Stats().Token - before; n != 1 {
		t.Errorf("%d token requests, want 1", n)
	}
	if c := setCookieNamed(resp, "oidcrp"); c == nil || c.MaxAge >= 0 {
		t.Error("session cookie not cleared")
	}
	old := e.cookie("oidcrp")
	if old != nil {
		t.Fatal("the browser kept the session cookie")
	}
	if _, resp := e.call(""); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("after the session ended: %d, want 401", resp.StatusCode)
	}
}

// TestUserTokenSourceAfterLogoutMeanwhile: a session ended while its
// request is served gives no more tokens, fresh or not.
func TestUserTokenSourceAfterLogoutMeanwhile(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{KeepTokens: true})
	e.login("/")
	c := e.cookie("oidcrp")
	req := httptest.NewRequest(http.MethodGet, e.app.URL+"/x", nil)
	req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	var before, after error
	e.rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ts, err := UserTokenSource(r.Context())
		if err != nil {
			t.Fatal(err)
		}
		_, before = ts.Token()
		u, _ := UserFromContext(r.Context())
		if err := e.rp.EndSession(r.Context(), u); err != nil {
			t.Fatal(err)
		}
		_, after = ts.Token()
	})).ServeHTTP(httptest.NewRecorder(), req)
	if before != nil || !errors.Is(after, ErrSessionEnded) {
		t.Errorf("before the logout: %v; after: %v, want ErrSessionEnded", before, after)
	}
}
