package oidcrp

import (
	"context"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// faultyStore is a MemoryStore whose writes fail as on a full disk: every
// Save while full, and Saves of the keys in failing until they are cleared.
type faultyStore struct {
	MemoryStore
	mu      sync.Mutex
	full    bool
	failing map[string]bool
}

func (s *faultyStore) Save(ctx context.Context, key string, value []byte) error {
	s.mu.Lock()
	fail := s.full || s.failing[key]
	s.mu.Unlock()
	if fail {
		return &pathErr{key: key}
	}
	return s.MemoryStore.Save(ctx, key, value)
}

// pathErr reads like the error a FileStore returns on a full disk.
type pathErr struct{ key string }

func (e *pathErr) Error() string { return "write " + e.key + ": no space left on device" }
func (e *pathErr) Unwrap() error { return syscall.ENOSPC }

func (s *faultyStore) set(full bool, failing ...string) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.full = full
	s.failing = map[string]bool{}
	for _, k := range failing {
		s.failing[k] = true
	}
}

// TestFullStoreRefusesToRegister: a store that cannot be written refuses the
// registration (503) instead of registering a client it could not keep; once
// it accepts writes, the login registers once and a restart reuses it.
func TestFullStoreRefusesToRegister(t *testing.T) {
	t.Parallel()
	store := &faultyStore{}
	store.set(true)
	e := newEnv(t, devop.Options{}, Config{Store: store})
	resp := e.get(e.app.URL+"/", html)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Fatalf("full store: %d, want 503", resp.StatusCode)
	}
	if n := e.op.Stats().Registration; n != 0 {
		t.Fatalf("registered %d clients with a store that cannot keep them", n)
	}
	if logs := e.logs.String(); !strings.Contains(logs, "credential store cannot be written") || !strings.Contains(logs, "no space left on device") {
		t.Errorf("the refusal is not logged with its cause:\n%s", logs)
	}

	store.set(false)
	e.clock.Advance(2 * time.Second) // past the backoff
	e.login("/")
	again := e.newRP(Config{Store: store})
	if err := again.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := e.op.Stats().Registration; n != 1 {
		t.Errorf("%d registrations, want 1", n)
	}
	if s := again.Status(); s.OrphanedRegistrations != 0 {
		t.Errorf("a restart after a clean registration counts %d orphans", s.OrphanedRegistrations)
	}
	if _, err := store.Load(context.Background(), e.rp.cfg.StoreKey+"#intent"); !errors.Is(err, ErrNotFound) {
		t.Errorf("the intent to register outlived the stored result: %v", err)
	}
}

// TestHeldCredentialsSavedWhenStoreRecovers: credentials the store refused
// after the registration serve from memory and are saved as soon as the
// store accepts writes again, so a restart registers nothing.
func TestHeldCredentialsSavedWhenStoreRecovers(t *testing.T) {
	t.Parallel()
	for _, via := range []string{"login", "maintenance"} {
		t.Run(via, func(t *testing.T) {
			t.Parallel()
			store := &faultyStore{}
			store.set(false, "oidcrp:client") // the disk fills between the check and the save
			e := newEnv(t, devop.Options{}, Config{Store: store})
			e.login("/")
			if _, err := store.Load(context.Background(), "oidcrp:client"); !errors.Is(err, ErrNotFound) {
				t.Fatalf("credentials stored despite the failure: %v", err)
			}
			if !strings.Contains(e.logs.String(), "live in this process only") {
				t.Fatalf("the failed save is not logged:\n%s", e.logs)
			}

			store.set(false)
			switch via {
			case "login":
				e.clock.Advance(5 * time.Second)
				e.browser.Jar, _ = cookiejar.New(nil)
				e.login("/") // a new login asks the lifecycle for the client
				e.logs.waitFor(t, "stored client credentials that were held in this process only", 5*time.Second)
			case "maintenance":
				e.rp.lc.maintain(context.Background(), false)
			}
			if _, err := store.Load(context.Background(), "oidcrp:client"); err != nil {
				t.Fatalf("credentials not stored after the store recovered: %v\n%s", err, e.logs)
			}
			if n := strings.Count(e.logs.String(), "held in this process only"); n != 1 {
				t.Errorf("the save is logged %d times, want once", n)
			}
			restarted := e.newRP(Config{Store: store})
			if err := restarted.Ready(context.Background()); err != nil {
				t.Fatal(err)
			}
			if n := e.op.Stats().Registration; n != 1 {
				t.Errorf("%d registrations after a restart, want 1", n)
			}
			if s := restarted.Status(); s.OrphanedRegistrations != 0 || s.ClientID != e.rp.Status().ClientID {
				t.Errorf("restarted with %+v, want client %s and no orphans", s, e.rp.Status().ClientID)
			}
		})
	}
}

// TestHeldCredentialsYieldToPeer: when a peer sharing the store registered
// and stored its client while this process held its own in memory, the
// process adopts the stored client and deletes its own at the provider
// rather than overwriting the peer's.
func TestHeldCredentialsYieldToPeer(t *testing.T) {
	t.Parallel()
	store := &faultyStore{}
	store.set(false, "oidcrp:client")
	e := newEnv(t, devop.Options{}, Config{Store: store})
	if err := e.rp.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	mine := e.rp.Status().ClientID
	e.rp.lc.dur.mu.Lock()
	e.rp.lc.dur.timer.Stop() // the background save must not beat the peer
	e.rp.lc.dur.mu.Unlock()
	store.set(false)
	e.clock.Advance(time.Second)
	peer := e.newRP(Config{Store: store})
	if err := peer.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	theirs := peer.Status().ClientID
	e.rp.lc.maintain(context.Background(), false)
	if got := e.rp.Status().ClientID; got != theirs {
		t.Errorf("uses client %s, want the peer's %s", got, theirs)
	}
	for _, c := range e.op.Clients() {
		if c.ID == mine {
			t.Errorf("the superseded client %s is left at the provider", mine)
		}
	}
	e.login("/")
}

// TestOrphanedRegistrationCounted: a process that registered and stopped
// before storing the result leaves an intent; the next start counts the lost
// registration in Status and logs it once.
func TestOrphanedRegistrationCounted(t *testing.T) {
	t.Parallel()
	store := &faultyStore{}
	store.set(false, "oidcrp:client")
	e := newEnv(t, devop.Options{}, Config{Store: store})
	if err := e.rp.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	lost := e.rp.Status().RegisteredAt
	e.rp.lc.close() // the process stops before the store recovers
	store.set(false)

	e.clock.Advance(time.Minute)
	next := e.newRP(Config{Store: store})
	if err := next.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := next.Status(); s.OrphanedRegistrations != 1 {
		t.Errorf("OrphanedRegistrations = %d, want 1", s.OrphanedRegistrations)
	}
	logs := e.logs.String()
	if n := strings.Count(logs, "registration without a stored result"); n != 1 {
		t.Errorf("the orphan is logged %d times, want once:\n%s", n, logs)
	}
	// The intent is recorded just before the registration, in whole seconds.
	if at := lost.UTC(); !strings.Contains(logs, "registration_started_at="+at.Format(time.RFC3339)) &&
		!strings.Contains(logs, "registration_started_at="+at.Add(-time.Second).Format(time.RFC3339)) {
		t.Errorf("the log does not name the time of the lost registration (%s):\n%s", at.Format(time.RFC3339), logs)
	}
	if n := e.op.Stats().Registration; n != 2 {
		t.Errorf("%d registrations, want 2", n)
	}

	third := e.newRP(Config{Store: store})
	if err := third.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := third.Status(); s.OrphanedRegistrations != 0 {
		t.Errorf("the same orphan is counted again by the next start: %d", s.OrphanedRegistrations)
	}
}

// TestOrphanCountSurvivesRebuild: a tenant rebuilt after a configuration
// change keeps reporting the lost registrations its predecessor found.
func TestOrphanCountSurvivesRebuild(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	e.rp.lc.dur.orphaned = 1
	next := e.newRP(Config{})
	next.lc.inherit(e.rp.lc)
	if n := next.Status().OrphanedRegistrations; n != 1 {
		t.Errorf("OrphanedRegistrations = %d after a rebuild, want 1", n)
	}
}
