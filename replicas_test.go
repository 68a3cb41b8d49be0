package oidcrp

import (
	"context"
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"slices"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// replicaPair is e's RP and a second replica sharing its store, served at
// another origin and so configured with another RedirectURL (and
// post-logout URL).
type replicaPair struct {
	e    *testEnv
	b    *RP
	bSrv *httptest.Server
}

func newReplicaPair(t *testing.T) *replicaPair {
	return newReplicaPairOn(t, new(MemoryStore))
}

func newReplicaPairOn(t *testing.T, store CredentialStore) *replicaPair {
	e := newEnv(t, devop.Options{}, Config{Store: store})
	p := &replicaPair{e: e, bSrv: newTLSServer(nil)}
	t.Cleanup(p.bSrv.Close)
	p.b = e.newRP(Config{Store: store, RedirectURL: p.bSrv.URL + "/auth/callback"})
	p.bSrv.Config.Handler = e.handler(p.b)
	return p
}

// loginAt signs a new browser in at base and fails t unless it ends on the
// protected page.
func (p *replicaPair) loginAt(base string) {
	p.e.t.Helper()
	p.e.browser.Jar, _ = cookiejar.New(nil)
	hops := p.e.follow(p.e.get(base+"/", html))
	last := hops[len(hops)-1]
	defer last.Body.Close()
	if last.StatusCode != http.StatusOK {
		body, _ := io.ReadAll(last.Body)
		p.e.t.Fatalf("login at %s ended with %d: %s\nlogs:\n%s", base, last.StatusCode, body, p.e.logs)
	}
}

// registered returns the provider's only client's redirect URIs and
// post-logout redirect URIs.
func (p *replicaPair) registered() (redirect, postLogout []string) {
	p.e.t.Helper()
	clients := p.e.op.Clients()
	if len(clients) != 1 {
		p.e.t.Fatalf("%d clients at the provider, want 1", len(clients))
	}
	return clients[0].RedirectURIs, clients[0].PostLogoutRedirectURIs
}

// TestReplicasWithTwoURLsShareOneRegistration: two replicas on one store,
// reached at two origins, register once and add the second one's URIs with
// one RFC 7592 update; then neither updates the registration again, over
// many logins and maintenance periods, and a login started at the first
// before the second appeared still completes.
func TestReplicasWithTwoURLsShareOneRegistration(t *testing.T) {
	t.Parallel()
	p := newReplicaPair(t)
	e := p.e
	e.login("/")

	// A login in flight at the first replica while the second one starts.
	e.browser.Jar, _ = cookiejar.New(nil)
	resp := e.get(e.app.URL+"/inflight", html)
	resp.Body.Close()
	if resp.StatusCode != http.StatusFound {
		t.Fatalf("starting a login: %d", resp.StatusCode)
	}
	jar := e.browser.Jar
	p.loginAt(p.bSrv.URL)
	e.browser.Jar = jar
	hops := e.follow(resp)
	if last := hops[len(hops)-1]; last.StatusCode != http.StatusOK {
		t.Fatalf("the login in flight at the first replica failed once the second registered its URL: %d\n%s", last.StatusCode, e.logs)
	}

	ctx := context.Background()
	for round := range 12 {
		p.loginAt(e.app.URL)
		p.loginAt(p.bSrv.URL)
		e.clock.Advance(time.Hour)
		e.rp.lc.maintain(ctx, round%2 == 0)
		p.b.lc.maintain(ctx, round%2 == 1)
	}
	if s := e.op.Stats(); s.Registration != 1 || s.RegistrationUpdate != 1 {
		t.Errorf("%d registrations and %d updates, want 1 and 1 (adding the second URL)\n%s", s.Registration, s.RegistrationUpdate, e.logs)
	}
	redirect, postLogout := p.registered()
	for _, want := range []string{e.app.URL + "/auth/callback", p.bSrv.URL + "/auth/callback"} {
		if !slices.Contains(redirect, want) {
			t.Errorf("registered redirect_uris %q lack %q", redirect, want)
		}
	}
	for _, want := range []string{e.app.URL + "/logout", p.bSrv.URL + "/logout"} {
		if !slices.Contains(postLogout, want) {
			t.Errorf("registered post_logout_redirect_uris %q lack %q", postLogout, want)
		}
	}
}

// TestReplicaURIsDroppedAfterWindow: a replica not seen for replicaWindow
// loses its URIs at the next update, and not before; when it comes back,
// they are added again.
func TestReplicaURIsDroppedAfterWindow(t *testing.T) {
	t.Parallel()
	p := newReplicaPair(t)
	e := p.e
	ctx := context.Background()
	e.login("/")
	p.loginAt(p.bSrv.URL)
	if s := e.op.Stats(); s.RegistrationUpdate != 1 {
		t.Fatalf("%d updates after the second replica started, want 1", s.RegistrationUpdate)
	}

	// The second replica stops. Within the window, nothing changes.
	e.clock.Advance(replicaWindow - time.Minute)
	e.rp.lc.maintain(ctx, true)
	p.loginAt(e.app.URL)
	if s := e.op.Stats(); s.RegistrationUpdate != 1 {
		t.Fatalf("the URIs of a replica seen %v ago were dropped", replicaWindow-time.Minute)
	}
	// Past it, the next maintenance drops its URIs.
	e.clock.Advance(2 * time.Minute)
	e.rp.lc.maintain(ctx, true)
	p.loginAt(e.app.URL)
	if s := e.op.Stats(); s.RegistrationUpdate != 2 {
		t.Fatalf("%d updates, want 2: the stale replica's URIs are not dropped\n%s", s.RegistrationUpdate, e.logs)
	}
	redirect, postLogout := p.registered()
	if !slices.Equal(redirect, []string{e.app.URL + "/auth/callback"}) || !slices.Equal(postLogout, []string{e.app.URL + "/logout"}) {
		t.Errorf("registered %q and %q after the second replica went away", redirect, postLogout)
	}

	// It comes back: its maintenance adds its URIs again, and it logs in.
	p.b.lc.maintain(ctx, true)
	p.loginAt(p.bSrv.URL)
	p.loginAt(e.app.URL)
	if s := e.op.Stats(); s.Registration != 1 || s.RegistrationUpdate != 3 {
		t.Errorf("%d registrations and %d updates after the return, want 1 and 3\n%s", s.Registration, s.RegistrationUpdate, e.logs)
	}
}

// recordDownStore fails to load the replicas' record while down is set.
type recordDownStore struct {
	MemoryStore
	down atomic.Bool
}

func (s *recordDownStore) Load(ctx context.Context, key string) ([]byte, error) {
	if strings.HasSuffix(key, "#uris") && s.down.Load() {
		return nil, errors.New("store unreachable")
	}
	return s.MemoryStore.Load(ctx, key)
}

// TestUnreadableReplicaRecordDropsNothing: a replica that cannot read the
// record of the replicas' URIs does not update the registration with its
// own URIs alone: its maintenance leaves the registration as it is, and a
// setup fails (and is retried) rather than drop the other's URIs.
func TestUnreadableReplicaRecordDropsNothing(t *testing.T) {
	t.Parallel()
	store := &recordDownStore{}
	p := newReplicaPairOn(t, store)
	e := p.e
	ctx := context.Background()
	e.login("/")
	p.loginAt(p.bSrv.URL)

	store.down.Store(true)
	e.rp.lc.maintain(ctx, true)
	restarted := e.newRP(Config{Store: store})
	e.app.Config.Handler = e.handler(restarted)
	e.browser.Jar, _ = cookiejar.New(nil)
	resp := e.get(e.app.URL+"/", html)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("setup without the record: %d, want 503", resp.StatusCode)
	}
	if s := e.op.Stats(); s.RegistrationUpdate != 1 {
		t.Fatalf("%d updates without the record, want 1 (the second replica's)\n%s", s.RegistrationUpdate, e.logs)
	}
	if redirect, _ := p.registered(); len(redirect) != 2 {
		t.Fatalf("registered %q", redirect)
	}

	store.down.Store(false)
	e.clock.Advance(time.Minute) // past the backoff
	p.loginAt(e.app.URL)
	p.loginAt(p.bSrv.URL)
	if s := e.op.Stats(); s.Registration != 1 || s.RegistrationUpdate != 1 {
		t.Errorf("%d registrations and %d updates once the record is back, want 1 and 1", s.Registration, s.RegistrationUpdate)
	}
}

// TestCorruptReplicaRecordDropsNothing: an unreadable record of the
// replicas' URIs is replaced by one holding the URIs registered now, so no
// update drops a replica's URIs before it had the time to record them again.
func TestCorruptReplicaRecordDropsNothing(t *testing.T) {
	t.Parallel()
	store := new(MemoryStore)
	p := newReplicaPairOn(t, store)
	e := p.e
	ctx := context.Background()
	e.login("/")
	p.loginAt(p.bSrv.URL)
	if err := store.Save(ctx, e.rp.lc.urisKey(), []byte("{not json")); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(time.Hour)
	e.rp.lc.maintain(ctx, true)
	p.loginAt(e.app.URL)
	p.loginAt(p.bSrv.URL)
	if s := e.op.Stats(); s.RegistrationUpdate != 1 {
		t.Fatalf("%d updates after the record was found corrupt, want 1 (the second replica's)\n%s", s.RegistrationUpdate, e.logs)
	}
	if !strings.Contains(e.logs.String(), "unreadable; starting it afresh") {
		t.Errorf("the corrupt record is not reported:\n%s", e.logs)
	}
	if b, err := store.Load(ctx, e.rp.lc.urisKey()); err != nil || !strings.Contains(string(b), p.bSrv.URL) {
		t.Errorf("the rewritten record lacks the second replica: %s %v", b, err)
	}
}
