package oidcrp

import (
	"context"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// Tests of the revocation record (revoke.go): a session that ends, ends in
// every process that shares the store, across tenant eviction, rebuilds and
// restarts, and whatever a refresh in flight does; its entries are bounded;
// applications end sessions themselves.

// revStatus sends an API request carrying only cookie c to h, as a replica
// (or a restarted process) serving h would receive it, and returns the
// status.
func revStatus(h http.Handler, target string, c *http.Cookie) int {
	req := httptest.NewRequest(http.MethodGet, target, nil)
	req.AddCookie(&http.Cookie{Name: c.Name, Value: c.Value})
	w := httptest.NewRecorder()
	h.ServeHTTP(w, req)
	return w.Code
}

// revRefusedWithin replays c at h until it is refused with 401, and fails t
// if it is still accepted after limit. It returns how long refusal took.
func revRefusedWithin(t *testing.T, h http.Handler, target string, c *http.Cookie, limit time.Duration) time.Duration {
	t.Helper()
	start := time.Now()
	for {
		status := revStatus(h, target, c)
		if status == http.StatusUnauthorized {
			return time.Since(start)
		}
		if status != http.StatusOK {
			t.Fatalf("replayed session: %d, want 200 or 401", status)
		}
		if time.Since(start) > limit {
			t.Fatalf("the other replica still accepts the ended session %v after the logout (limit %v)", time.Since(start).Round(time.Millisecond), limit)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// revUserOf returns the User that rp's Require hands to its handler for
// cookie c.
func (e *testEnv) revUserOf(rp *RP, c *http.Cookie) *User {
	e.t.Helper()
	var u *User
	h := rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { u, _ = UserFromContext(r.Context()) }))
	if status := revStatus(h, e.app.URL+"/api", c); u == nil {
		e.t.Fatalf("no user for the session cookie: %d", status)
	}
	return u
}

// revNewBrowser gives the test browser an empty cookie jar: another browser
// of the same user.
func (e *testEnv) revNewBrowser() {
	e.browser.Jar, _ = cookiejar.New(nil)
}

// TestLogoutReachesReplicas: two relying parties on one store, as two
// replicas of an application would be. A logout at one is refused at the
// other within a second, for both stores of this package.
func TestLogoutReachesReplicas(t *testing.T) {
	t.Parallel()
	stores := map[string]func(t *testing.T) (CredentialStore, CredentialStore){
		"MemoryStore": func(*testing.T) (CredentialStore, CredentialStore) {
			s := new(MemoryStore)
			return s, s
		},
		"FileStore": func(t *testing.T) (CredentialStore, CredentialStore) {
			path := filepath.Join(t.TempDir(), "oidc.json")
			return NewFileStore(path), NewFileStore(path) // two processes open the same file
		},
	}
	for name, open := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			s1, s2 := open(t)
			e := newEnv(t, devop.Options{}, Config{Store: s1})
			replica := e.handler(e.newRP(Config{Store: s2}))
			target := e.app.URL + "/api"

			e.login("/")
			old := e.cookie("oidcrp")
			if status := revStatus(replica, target, old); status != http.StatusOK {
				t.Fatalf("the session at the other replica before the logout: %d, want 200", status)
			}
			e.postLogout()
			if status := e.replay("/api", old); status != http.StatusUnauthorized {
				t.Fatalf("the session at the replica that served the logout: %d, want 401", status)
			}
			took := revRefusedWithin(t, replica, target, old, time.Second)
			t.Logf("refused at the other replica %v after the logout", took.Round(time.Millisecond))

			// EndSessions at one replica reaches the other as well.
			e.revNewBrowser()
			e.login("/")
			again := e.cookie("oidcrp")
			if status := revStatus(replica, target, again); status != http.StatusOK {
				t.Fatalf("a new session at the other replica: %d, want 200", status)
			}
			if err := e.rp.EndSessions(context.Background(), "demo-user"); err != nil {
				t.Fatal(err)
			}
			revRefusedWithin(t, replica, target, again, time.Second)
		})
	}
}

// TestLogoutSurvivesRestart: a process started after the logout, on the
// same file, refuses the session from its first request.
func TestLogoutSurvivesRestart(t *testing.T) {
	t.Parallel()
	path := filepath.Join(t.TempDir(), "oidc.json")
	e := newEnv(t, devop.Options{}, Config{Store: NewFileStore(path)})
	e.login("/")
	old := e.cookie("oidcrp")
	e.postLogout()
	restarted := e.handler(e.newRP(Config{Store: NewFileStore(path)}))
	if status := revStatus(restarted, e.app.URL+"/api", old); status != http.StatusUnauthorized {
		t.Fatalf("the logged-out session at the first request of a restarted process: %d, want 401", status)
	}
}

// revTenantCookie returns the browser's session cookie of the tenant whose
// RP is rp.
func (e *tenantEnv) revTenantCookie(rp *RP) *http.Cookie {
	e.t.Helper()
	app, _ := url.Parse(e.app.URL)
	for _, c := range e.browser.Jar.Cookies(app) {
		if c.Name == rp.cfg.SessionName {
			return c
		}
	}
	e.t.Fatalf("no session cookie %s", rp.cfg.SessionName)
	return nil
}

// revTenant is the tenant id as newTenantEnv's Resolve finds it.
func (e *tenantEnv) revTenant(id string) Tenant {
	return Tenant{ID: id, Issuer: e.ops[id].Issuer(), RedirectURL: e.app.URL + "/t/" + id + "/callback", LogoutPath: "/t/" + id + "/logout"}
}

func (e *tenantEnv) revReplay(path string, c *http.Cookie) int {
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

func (e *tenantEnv) revLogout(id string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, e.app.URL+"/t/"+id+"/logout", nil)
	req.Header.Set("Origin", e.app.URL)
	resp, err := e.browser.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("logout at tenant %s: %d", id, resp.StatusCode)
	}
}

// revLoggedOutTenant signs in at tenant a, keeps its cookie, signs out and
// checks that the cookie is refused right after.
func revLoggedOutTenant(t *testing.T, e *tenantEnv) *http.Cookie {
	t.Helper()
	if status, body := e.login("/t/a/home"); status != http.StatusOK {
		t.Fatalf("login at tenant a: %d %s", status, body)
	}
	rp, _ := e.tenants.For(e.revTenant("a"))
	old := e.revTenantCookie(rp)
	if status := e.revReplay("/t/a/home", old); status != http.StatusOK {
		t.Fatalf("tenant a's session before the logout: %d, want 200", status)
	}
	e.revLogout("a")
	if status := e.revReplay("/t/a/home", old); status != http.StatusUnauthorized {
		t.Fatalf("tenant a's session right after the logout: %d, want 401", status)
	}
	return old
}

// TestLogoutSurvivesTenantEviction: with MaxResident=1, a logged-out
// session is refused after its tenant was evicted and comes back.
func TestLogoutSurvivesTenantEviction(t *testing.T) {
	t.Parallel()
	e := newTenantEnv(t, "a", "b")
	e.tenants.cfg.MaxResident = 1 // before any request
	old := revLoggedOutTenant(t, e)
	if status, body := e.login("/t/b/home"); status != http.StatusOK {
		t.Fatalf("login at tenant b: %d %s", status, body)
	}
	if st := e.tenants.Status(); len(st) != 1 || st[0].Tenant != "b" {
		t.Fatalf("resident tenants %+v, want b only: a was not evicted", st)
	}
	if status := e.revReplay("/t/a/home", old); status != http.StatusUnauthorized {
		t.Fatalf("tenant a's logged-out session once a was evicted: %d, want 401", status)
	}
}

// TestLogoutSurvivesTenantRebuild: a change of the tenant's configuration
// rebuilds its relying party; the logged-out session stays refused.
func TestLogoutSurvivesTenantRebuild(t *testing.T) {
	t.Parallel()
	e := newTenantEnv(t, "a", "b")
	e.tenants.cfg.ChangeInterval = -1 // every change at once; before any request
	old := revLoggedOutTenant(t, e)
	before, _ := e.tenants.For(e.revTenant("a"))
	changed := e.revTenant("a")
	changed.LogoutPath = "/t/a/signout"
	after, err := e.tenants.For(changed)
	if err != nil || after == before {
		t.Fatalf("the tenant was not rebuilt: %v", err)
	}
	// The request resolves the original configuration: a second rebuild.
	if status := e.revReplay("/t/a/home", old); status != http.StatusUnauthorized {
		t.Fatalf("tenant a's logged-out session after rebuilds: %d, want 401", status)
	}
	if rp, _ := e.tenants.For(e.revTenant("a")); rp == before || rp == after {
		t.Fatal("the replay did not rebuild the tenant")
	}
}

// TestRefreshInFlightCannotUndoLogout: a refresh that was in flight when
// the session ended does not bring it back: not for its own request, not
// for the old cookie replayed afterwards, not six minutes later.
func TestRefreshInFlightCannotUndoLogout(t *testing.T) {
	t.Parallel()
	var armed atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	e := newEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute, AccessTokenLifetime: 5 * time.Minute,
		TokenResponse: func(map[string]any) {
			if armed.CompareAndSwap(true, false) { // the refresh grant, once
				close(entered)
				<-release
			}
		}}, Config{KeepTokens: true})
	e.login("/api")
	old := e.cookie("oidcrp")
	e.clock.Advance(5*time.Minute + time.Second) // the access token expired: the next request refreshes
	armed.Store(true)

	type result struct {
		status int
		cookie *http.Cookie
	}
	done := make(chan result, 1)
	go func() {
		req, _ := http.NewRequest(http.MethodGet, e.app.URL+"/api", nil)
		req.AddCookie(&http.Cookie{Name: old.Name, Value: old.Value})
		resp, err := (&http.Client{Transport: e.browser.Transport}).Do(req)
		if err != nil {
			done <- result{}
			return
		}
		resp.Body.Close()
		done <- result{resp.StatusCode, setCookieNamed(resp, "oidcrp")}
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("no refresh reached the token endpoint")
	}
	e.postLogout()
	if status := e.replay("/api", old); status != http.StatusUnauthorized {
		t.Errorf("right after the logout: %d, want 401", status)
	}
	close(release)
	var r result
	select {
	case r = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the request with the refresh in flight did not finish")
	}
	if r.status != http.StatusUnauthorized {
		t.Errorf("the request whose refresh was in flight during the logout: %d, want 401", r.status)
	}
	refreshed := r.cookie
	if refreshed != nil && (refreshed.Value == "" || refreshed.MaxAge < 0) {
		refreshed = nil // a cleared cookie
	}
	if refreshed != nil {
		t.Errorf("a refreshed session cookie was written after the logout")
	}
	if status := e.replay("/api", old); status != http.StatusUnauthorized {
		t.Errorf("once the refresh completed: %d, want 401", status)
	}
	e.clock.Advance(6 * time.Minute) // past the first ID token's expiry: a new refresh would be due
	if status := e.replay("/api", old); status != http.StatusUnauthorized {
		t.Errorf("six minutes later: %d, want 401", status)
	}
	if refreshed != nil {
		if status := e.replay("/api", refreshed); status != http.StatusUnauthorized {
			t.Errorf("the refreshed cookie six minutes later: %d, want 401", status)
		}
	}
}

// revRecord returns the store's revocation record, every live entry.
func revRecord(t *testing.T, s CredentialStore) map[string]Revocation {
	t.Helper()
	entries, _, err := s.(Revoker).Revoked(context.Background(), "")
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]Revocation{}
	for _, e := range entries {
		out[e.Key] = e
	}
	return out
}

// revInView reports whether this process's view of the record holds key.
func revInView(rp *RP, key string) bool {
	v := rp.revocations
	v.mu.RLock()
	defer v.mu.RUnlock()
	_, ok := v.entries[key]
	return ok
}

// revOnlyEntry returns the single entry of the store's record.
func revOnlyEntry(t *testing.T, s CredentialStore) Revocation {
	t.Helper()
	rec := revRecord(t, s)
	if len(rec) != 1 {
		t.Fatalf("%d entries in the record, want 1: %v", len(rec), rec)
	}
	for _, e := range rec {
		return e
	}
	panic("unreachable")
}

// revViewForgets waits until the view no longer holds key: the clock was
// advanced past the entry's end, so the next poll of the record prunes it.
func revViewForgets(t *testing.T, rp *RP, key string) {
	t.Helper()
	deadline := time.Now().Add(3 * time.Second)
	for revInView(rp, key) {
		if time.Now().After(deadline) {
			t.Fatal("the view still holds the entry after the end of the longest session it can affect")
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestRevocationsBounded: an entry lasts as long as the longest session it
// can affect, then leaves the process's view and the store's record.
func TestRevocationsBounded(t *testing.T) {
	t.Parallel()
	const ms = time.Millisecond

	// A session bound to its ID token: the entry ends with the ID token.
	// The clock is set back so that this end comes 5 s of real time after
	// the login: the MemoryStore prunes its record by real time, and the
	// logout must reach it before then.
	t.Run("ID token", func(t *testing.T) {
		t.Parallel()
		const lifetime = 10 * time.Minute
		e := newEnv(t, devop.Options{IDTokenLifetime: lifetime}, Config{})
		e.clock.Advance(-lifetime + 5*time.Second)
		e.login("/")
		c := e.cookie("oidcrp")
		u := e.revUserOf(e.rp, c)
		e.postLogout()
		entry := revOnlyEntry(t, e.rp.cfg.Store)
		if !entry.Until.Equal(u.Expiry) {
			t.Errorf("the entry lasts until %v, the session until %v", entry.Until, u.Expiry)
		}
		if !revInView(e.rp, entry.Key) {
			t.Fatal("the logout is not in this process's view")
		}
		e.clock.Advance(lifetime + time.Second)
		revViewForgets(t, e.rp, entry.Key)
		if status := e.replay("/", c); status != http.StatusUnauthorized {
			t.Errorf("the expired session once its entry went: %d, want 401", status)
		}
		time.Sleep(time.Until(entry.Until) + 10*ms)
		if err := e.rp.EndSessions(context.Background(), "someone-else"); err != nil { // the next write prunes
			t.Fatal(err)
		}
		if _, ok := revRecord(t, e.rp.cfg.Store)[entry.Key]; ok {
			t.Error("the store's record still holds the entry after the session's end")
		}
	})

	// With KeepTokens and SessionLifetime, the session ends with its
	// lifetime, whatever the refresh token; so does the entry.
	t.Run("SessionLifetime", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, devop.Options{}, Config{KeepTokens: true, SessionLifetime: 2 * time.Hour})
		e.login("/")
		u := e.revUserOf(e.rp, e.cookie("oidcrp"))
		e.postLogout()
		entry := revOnlyEntry(t, e.rp.cfg.Store)
		if !entry.Until.Equal(u.Expiry) {
			t.Errorf("the entry lasts until %v, the session until %v", entry.Until, u.Expiry)
		}
		e.clock.Advance(2*time.Hour + time.Minute)
		revViewForgets(t, e.rp, entry.Key)
	})

	// A refreshable session without SessionLifetime lasts 30 days from the
	// login at most, and its entry as long.
	t.Run("refreshable", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute}, Config{KeepTokens: true})
		before := e.clock.Now().Truncate(ms)
		e.login("/")
		after := e.clock.Now()
		old := e.cookie("oidcrp")
		e.clock.Advance(time.Hour) // the entry counts from the login, not from the logout
		e.postLogout()
		entry := revOnlyEntry(t, e.rp.cfg.Store)
		if entry.Until.Before(before.Add(maxRefreshable)) || entry.Until.After(after.Add(maxRefreshable)) {
			t.Errorf("the entry lasts until %v, want 30 days after the login (%v)", entry.Until, after)
		}
		e.clock.Advance(maxRefreshable - time.Hour + time.Minute)
		revViewForgets(t, e.rp, entry.Key)
		if status := e.replay("/api", old); status != http.StatusUnauthorized {
			t.Errorf("the logged-out session 30 days after its login: %d, want 401", status)
		}
	})
}

// TestLogoutDoesNotWalkSessionCache: a logout completes while the session
// cache is write-locked, so it neither walks nor locks the cache.
func TestLogoutDoesNotWalkSessionCache(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	e.login("/")
	c := e.cookie("oidcrp")
	u := e.revUserOf(e.rp, c)
	e.rp.sessions.mu.Lock()
	done := make(chan struct{})
	go func() {
		defer close(done)
		e.rp.endSession(httptest.NewRecorder(), httptest.NewRequest(http.MethodPost, e.app.URL+"/logout", nil), u)
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Error("the logout waits for the session cache's write lock")
	}
	e.rp.sessions.mu.Unlock()
	<-done
	if status := e.replay("/", c); status != http.StatusUnauthorized {
		t.Errorf("the ended session: %d, want 401", status)
	}
}

// TestEndSessions: an application ends every session of a subject (two
// browsers); the subject signs in again afterwards.
func TestEndSessions(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	e.login("/")
	first := e.cookie("oidcrp")
	e.revNewBrowser()
	e.login("/")
	second := e.cookie("oidcrp")
	for _, c := range []*http.Cookie{first, second} {
		if status := e.replay("/", c); status != http.StatusOK {
			t.Fatalf("a session before EndSessions: %d, want 200", status)
		}
	}
	ctx := context.Background()
	if err := e.rp.EndSessions(ctx, "someone-else"); err != nil {
		t.Fatal(err)
	}
	if status := e.replay("/", first); status != http.StatusOK {
		t.Fatalf("EndSessions of another subject ended this one: %d", status)
	}
	if err := e.rp.EndSessions(ctx, "demo-user"); err != nil {
		t.Fatal(err)
	}
	for i, c := range []*http.Cookie{first, second} {
		if status := e.replay("/", c); status != http.StatusUnauthorized {
			t.Errorf("browser %d after EndSessions: %d, want 401", i+1, status)
		}
	}
	e.revNewBrowser()
	if out := e.login("/"); out["sub"] != "demo-user" {
		t.Fatalf("login after EndSessions: %v", out)
	}
	if status := e.replay("/", e.cookie("oidcrp")); status != http.StatusOK {
		t.Errorf("the session started after EndSessions: %d, want 200", status)
	}
	if err := e.rp.EndSessions(ctx, ""); err == nil {
		t.Error("EndSessions without a subject succeeded")
	}
}

// TestEndSession: an application ends one session (from UserFromContext);
// another session of the same subject lives on.
func TestEndSession(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	e.login("/")
	first := e.cookie("oidcrp")
	e.revNewBrowser()
	e.login("/")
	second := e.cookie("oidcrp")
	end := e.rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := UserFromContext(r.Context())
		if err := e.rp.EndSession(r.Context(), u); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.WriteHeader(http.StatusNoContent)
	}))
	if status := revStatus(end, e.app.URL+"/end", first); status != http.StatusNoContent {
		t.Fatalf("EndSession: %d", status)
	}
	if status := e.replay("/", first); status != http.StatusUnauthorized {
		t.Errorf("the ended session: %d, want 401", status)
	}
	if status := e.replay("/", second); status != http.StatusOK {
		t.Errorf("the other session of the subject: %d, want 200", status)
	}
	if err := e.rp.EndSession(context.Background(), nil); err == nil {
		t.Error("EndSession without a user succeeded")
	}
}

// TestEndSessionsUnderTenants: two tenants of one provider, one subject
// signed in at both; EndSessions at one tenant ends its sessions only.
func TestEndSessionsUnderTenants(t *testing.T) {
	t.Parallel()
	e := newTenantEnv(t, "a", "b")
	e.ops["b"] = e.ops["a"] // same issuer, same subject; before any request
	for _, id := range []string{"a", "b"} {
		if status, body := e.login("/t/" + id + "/home"); status != http.StatusOK {
			t.Fatalf("login at tenant %s: %d %s", id, status, body)
		}
	}
	rpA, _ := e.tenants.For(e.revTenant("a"))
	rpB, _ := e.tenants.For(e.revTenant("b"))
	a, b := e.revTenantCookie(rpA), e.revTenantCookie(rpB)
	if err := rpA.EndSessions(context.Background(), "demo-user"); err != nil {
		t.Fatal(err)
	}
	if status := e.revReplay("/t/a/home", a); status != http.StatusUnauthorized {
		t.Errorf("tenant a's session after EndSessions at a: %d, want 401", status)
	}
	if status := e.revReplay("/t/b/home", b); status != http.StatusOK {
		t.Errorf("tenant b's session after EndSessions at a: %d, want 200", status)
	}
	if !strings.Contains(a.Name, "oidcrp_") || a.Name == b.Name {
		t.Errorf("tenant cookies %q and %q", a.Name, b.Name)
	}
}

// TestRefreshInFlightAtReplicaCannotUndoLogout: the refresh runs at one
// replica while the logout is served by another; the refreshing replica
// reads the shared record before it stores the result, without waiting
// for its next poll.
func TestRefreshInFlightAtReplicaCannotUndoLogout(t *testing.T) {
	t.Parallel()
	var armed atomic.Bool
	entered, release := make(chan struct{}), make(chan struct{})
	store := new(MemoryStore)
	e := newEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute, AccessTokenLifetime: 5 * time.Minute,
		TokenResponse: func(map[string]any) {
			if armed.CompareAndSwap(true, false) {
				close(entered)
				<-release
			}
		}}, Config{KeepTokens: true, Store: store})
	replica := e.handler(e.newRP(Config{KeepTokens: true, Store: store}))
	target := e.app.URL + "/api"
	e.login("/api")
	old := e.cookie("oidcrp")
	if status := revStatus(replica, target, old); status != http.StatusOK {
		t.Fatalf("the session at the replica before the logout: %d, want 200", status)
	}
	e.clock.Advance(5*time.Minute + time.Second)
	armed.Store(true)
	done := make(chan *httptest.ResponseRecorder, 1)
	go func() {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.AddCookie(&http.Cookie{Name: old.Name, Value: old.Value})
		w := httptest.NewRecorder()
		replica.ServeHTTP(w, req)
		done <- w
	}()
	select {
	case <-entered:
	case <-time.After(10 * time.Second):
		close(release)
		t.Fatal("no refresh reached the token endpoint")
	}
	e.postLogout() // at the other replica
	close(release)
	var w *httptest.ResponseRecorder
	select {
	case w = <-done:
	case <-time.After(10 * time.Second):
		t.Fatal("the request with the refresh in flight did not finish")
	}
	if w.Code != http.StatusUnauthorized {
		t.Errorf("the replica's request whose refresh was in flight during the logout: %d, want 401", w.Code)
	}
	if c := setCookieNamed(w.Result(), "oidcrp"); c != nil && c.Value != "" && c.MaxAge >= 0 {
		t.Error("the replica wrote a refreshed session cookie after the logout")
	}
	e.clock.Advance(6 * time.Minute)
	if status := revStatus(replica, target, old); status != http.StatusUnauthorized {
		t.Errorf("the old cookie at the replica six minutes later: %d, want 401", status)
	}
}
