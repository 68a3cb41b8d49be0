package oidcrp

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

func TestDecommission(t *testing.T) {
	t.Parallel()
	store := new(MemoryStore)
	e := newEnv(t, devop.Options{}, Config{Store: store})
	e.login("/")
	if err := e.rp.Decommission(context.Background()); err != nil {
		t.Fatal(err)
	}
	if s := e.op.Stats(); s.RegistrationDelete != 1 || len(e.op.Clients()) != 0 {
		t.Fatalf("not deleted at the provider: %+v", s)
	}
	if _, err := store.Load(context.Background(), e.rp.cfg.StoreKey); !errors.Is(err, ErrNotFound) {
		t.Errorf("credentials still stored: %v", err)
	}
	// The next login registers anew.
	e.browser.Jar, _ = cookiejar.New(nil)
	e.login("/")
	if s := e.op.Stats(); s.Registration != 2 {
		t.Errorf("registrations after decommission and login: %d", s.Registration)
	}
}

func TestSupersededRegistrationsAreDeletedLater(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	e.login("/")
	old := e.rp.lc.cur.Load().creds
	// Another application instance on its own store finds the old client
	// recorded as superseded (its deletion had failed): its next
	// registration deletes it.
	other := e.newRP(Config{Store: new(MemoryStore)})
	other.lc.recordSuperseded(context.Background(), old)
	if err := other.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	clients := e.op.Clients()
	if len(clients) != 1 || clients[0].ID == old.ClientID {
		t.Fatalf("superseded client left at the provider: %+v", clients)
	}
	// An empty list may be deleted from the store; a failing Load is no answer.
	if list, err := other.lc.loadSuperseded(context.Background()); (err != nil && !errors.Is(err, ErrNotFound)) || len(list) != 0 {
		t.Errorf("%d superseded registrations still recorded (%v)", len(list), err)
	}
}

func TestPeriodicRegistrationCheck(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	e.login("/")
	e.rp.lc.mu.Lock()
	armed := e.rp.lc.timer != nil
	e.rp.lc.mu.Unlock()
	if !armed {
		t.Fatal("no periodic maintenance scheduled after the first setup")
	}
	e.op.ForgetClients()
	e.rp.lc.tick() // what the timer runs every checkEvery
	// The check dropped the forgotten client: the next login registers anew
	// and succeeds at its first attempt.
	e.browser.Jar, _ = cookiejar.New(nil)
	if out := e.login("/"); out["sub"] != "demo-user" {
		t.Fatalf("after the periodic check: %v", out)
	}
	s := e.op.Stats()
	if s.Registration != 2 || s.RegistrationRead == 0 {
		t.Fatalf("stats %+v: want a read and a second registration", s)
	}
	// A client used since the last tick is checked; an idle one is not.
	e.rp.lc.tick()
	used := e.op.Stats().RegistrationRead
	if used != s.RegistrationRead+1 {
		t.Errorf("reads after a tick following a login: %d, want %d", used, s.RegistrationRead+1)
	}
	e.rp.lc.tick()
	if idle := e.op.Stats().RegistrationRead; idle != used {
		t.Errorf("an idle client was checked: reads %d, want %d", idle, used)
	}
	e.rp.lc.close()
	e.rp.lc.mu.Lock()
	stopped := e.rp.lc.timer.Stop() // false: already stopped by close
	e.rp.lc.mu.Unlock()
	if stopped {
		t.Error("close left the maintenance timer running")
	}
}

// TestFileStoreProcessesRegisterOnce runs 3 processes with 50 concurrent
// first requests each, sharing one FileStore: one registration in all.
func TestFileStoreProcessesRegisterOnce(t *testing.T) {
	t.Parallel()
	if os.Getenv("OIDCRP_CHILD_ISSUER") != "" {
		return // the child's work is in TestFileStoreChildProcess
	}
	op := devop.New(devop.Options{SigningKey: providerKey(t)})
	srv := httptest.NewServer(op) // plain HTTP on loopback: the children need no certificate
	defer srv.Close()
	op.SetIssuer(srv.URL)
	path := filepath.Join(t.TempDir(), "creds.json")
	var wg sync.WaitGroup
	outs := make([]string, 3)
	errs := make([]error, 3)
	for i := range 3 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			cmd := exec.Command(os.Args[0], "-test.run=^TestFileStoreChildProcess$", "-test.count=1")
			cmd.Env = append(os.Environ(), "OIDCRP_CHILD_ISSUER="+op.Issuer(), "OIDCRP_CHILD_STORE="+path)
			out, err := cmd.CombinedOutput()
			outs[i], errs[i] = string(out), err
		}()
	}
	wg.Wait()
	ids := map[string]bool{}
	for i := range 3 {
		if errs[i] != nil {
			t.Fatalf("process %d: %v\n%s", i, errs[i], outs[i])
		}
		for _, line := range strings.Split(outs[i], "\n") {
			if id, ok := strings.CutPrefix(line, "CLIENT "); ok {
				ids[id] = true
			}
		}
	}
	if s := op.Stats(); s.Registration != 1 || len(ids) != 1 {
		t.Fatalf("3 processes × 50 requests: %d registrations, client ids %v", s.Registration, ids)
	}
}

func TestFileStoreChildProcess(t *testing.T) {
	issuer := os.Getenv("OIDCRP_CHILD_ISSUER")
	if issuer == "" {
		t.Skip("runs as a child of TestFileStoreProcessesRegisterOnce")
	}
	rp, err := New(Config{Issuer: issuer, RedirectURL: "http://127.0.0.1:1/cb", Store: NewFileStore(os.Getenv("OIDCRP_CHILD_STORE")),
		Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	h := rp.Require(http.NotFoundHandler())
	var wg sync.WaitGroup
	for range 50 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:1/", nil)
			req.Header.Set("Accept", html)
			w := httptest.NewRecorder()
			h.ServeHTTP(w, req)
			if w.Code != http.StatusFound {
				t.Errorf("first request: %d %s", w.Code, w.Body)
			}
		}()
	}
	wg.Wait()
	fmt.Printf("CLIENT %s\n", rp.clientID())
}

// TestReplicasRotatingTokensRegisterOnce: replicas sharing a store start
// together against a provider that rotates the registration access token on
// every read; their checks take turns and no one mistakes a rotated token
// for a forgotten client.
func TestReplicasRotatingTokensRegisterOnce(t *testing.T) {
	t.Parallel()
	store := new(MemoryStore)
	e := newEnv(t, devop.Options{RotateRegistrationToken: true}, Config{Store: store})
	if err := e.rp.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	for range 4 {
		replica := e.newRP(Config{Store: store})
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := replica.Ready(context.Background()); err != nil {
				t.Error(err)
			}
		}()
	}
	wg.Wait()
	if s := e.op.Stats(); s.Registration != 1 || len(e.op.Clients()) != 1 {
		t.Fatalf("%d registrations, %d clients at the provider; want 1", s.Registration, len(e.op.Clients()))
	}
}

// TestExpiredSecretsDoNotStorm: a provider issuing secrets that have already
// expired gets a bounded number of registrations, not one per request.
func TestExpiredSecretsDoNotStorm(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{SecretLifetime: -time.Minute}, Config{})
	for range 5 {
		resp := e.get(e.app.URL+"/", html)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Errorf("login with an expired secret: %d, want 503", resp.StatusCode)
		}
	}
	if s := e.op.Stats(); s.Registration != 1 {
		t.Errorf("%d registrations for 5 requests within the backoff", s.Registration)
	}
	if !strings.Contains(e.logs.String(), "expired at") {
		t.Errorf("the cause is not logged:\n%s", e.logs)
	}
}

// failingStore fails every call once broken.
type failingStore struct {
	*MemoryStore
	broken atomic.Bool
}

func (s *failingStore) Load(ctx context.Context, key string) ([]byte, error) {
	if s.broken.Load() {
		return nil, errors.New("store down")
	}
	return s.MemoryStore.Load(ctx, key)
}

// TestStoreOutageAtRenewalKeepsWorkingSecret: when the store fails at
// renewal time, logins go on with the secret that still works.
func TestStoreOutageAtRenewalKeepsWorkingSecret(t *testing.T) {
	t.Parallel()
	store := &failingStore{MemoryStore: new(MemoryStore)}
	e := newEnv(t, devop.Options{SecretLifetime: 20 * time.Minute}, Config{Store: store})
	e.login("/")
	store.broken.Store(true)
	e.clock.Advance(16 * time.Minute) // inside the renewal margin, before expiry
	e.browser.Jar, _ = cookiejar.New(nil)
	if out := e.login("/"); out["sub"] != "demo-user" {
		t.Fatalf("login during a store outage: %v", out)
	}
	if !strings.Contains(e.logs.String(), "using the current credentials") {
		t.Errorf("fallback not logged:\n%s", e.logs)
	}
}
