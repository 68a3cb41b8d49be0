package redisstore

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/internal/devop"
)

// newOP starts an in-process provider on a TLS test server.
func newOP(t *testing.T, opts devop.Options) (*devop.Provider, *httptest.Server) {
	t.Helper()
	op := devop.New(opts)
	srv := httptest.NewTLSServer(op)
	t.Cleanup(srv.Close)
	op.SetIssuer(srv.URL)
	return op, srv
}

// newRP returns a relying party of op using store, as one replica of an
// application would run it.
func newRP(t *testing.T, srv *httptest.Server, store *Store) *oidcrp.RP {
	t.Helper()
	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:      srv.URL,
		RedirectURL: "https://app.example/cb",
		Store:       store,
		HTTPClient:  srv.Client(),
		Logger:      slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		t.Fatal(err)
	}
	return rp
}

// storeKey is the default key of the credentials of the provider at srv.
func storeKey(*httptest.Server) string { return "oidcrp:client" }

// TestRPRegistersOnce runs three replicas, each with its own Redis client,
// each getting ready from 20 goroutines at once: the provider must see one
// registration, and every replica must use its client.
func TestRPRegistersOnce(t *testing.T) {
	t.Parallel()
	op, srv := newOP(t, devop.Options{})
	prefix := newPrefix(t)
	var rps []*oidcrp.RP
	for range 3 {
		rps = append(rps, newRP(t, srv, New(newClient(t), Options{Prefix: prefix})))
	}
	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	var wg sync.WaitGroup
	for _, rp := range rps {
		for range 20 {
			wg.Go(func() {
				if err := rp.Ready(ctx); err != nil {
					t.Errorf("Ready: %v", err)
				}
			})
		}
	}
	wg.Wait()
	if n := op.Stats().Registration; n != 1 {
		t.Errorf("%d registrations by 3 replicas sharing a Redis store, want 1", n)
	}
	id := rps[0].Status().ClientID
	for i, rp := range rps {
		if rp.Status().ClientID == "" || rp.Status().ClientID != id {
			t.Errorf("replica %d uses client %q, replica 0 uses %q", i, rp.Status().ClientID, id)
		}
	}
	if clients := op.Clients(); len(clients) != 1 || clients[0].ID != id {
		t.Errorf("the provider knows %d clients, want only %q", len(clients), id)
	}
}

// TestRPTakesOverFromCrashedHolder checks that when the holder of the
// registration lock dies without releasing it, another replica registers
// as soon as the lease expires, and that the dead holder, were it to wake,
// could not overwrite the result.
func TestRPTakesOverFromCrashedHolder(t *testing.T) {
	t.Parallel()
	const ttl = time.Second
	op, srv := newOP(t, devop.Options{})
	prefix := newPrefix(t)

	crashed := New(newClient(t), Options{Prefix: prefix, LeaseTTL: ttl})
	crashed.stalled.Store(true) // never renews: its process is gone
	unlock, err := crashed.Lock(t.Context(), storeKey(srv))
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	locked := time.Now()

	rp := newRP(t, srv, New(newClient(t), Options{Prefix: prefix, LeaseTTL: ttl}))
	ctx, cancel := context.WithTimeout(t.Context(), 10*ttl)
	defer cancel()
	if err := rp.Ready(ctx); err != nil {
		t.Fatalf("Ready while a crashed replica holds the lock: %v", err)
	}
	took := time.Since(locked)
	t.Logf("ready %v after the crashed replica took the lock (lease TTL %v)", took.Round(time.Millisecond), ttl)
	if took < ttl/2 {
		t.Errorf("ready after %v: the crashed replica's lock was not respected", took)
	}
	if limit := ttl + time.Second; took > limit {
		t.Errorf("ready after %v, want at most %v", took, limit)
	}
	if n := op.Stats().Registration; n != 1 {
		t.Errorf("%d registrations, want 1", n)
	}

	err = crashed.Save(t.Context(), storeKey(srv), []byte(`{"client_id":"stale"}`))
	if !errors.Is(err, oidcrp.ErrLockLost) {
		t.Fatalf("Save by the crashed holder = %v, want an error matching ErrLockLost", err)
	}
	b, err := crashed.Load(t.Context(), storeKey(srv))
	if err != nil || !strings.Contains(string(b), rp.Status().ClientID) {
		t.Fatalf("stored credentials %.40q, %v; want those of %q", b, err, rp.Status().ClientID)
	}
}

// TestRPPausedHolderDefersToSuccessor pauses a replica in the middle of its
// registration, lets its lease expire and another replica register, then
// resumes it: it must find its lease lost, adopt the other replica's client
// and withdraw its own.
func TestRPPausedHolderDefersToSuccessor(t *testing.T) {
	t.Parallel()
	const ttl = 500 * time.Millisecond
	entered, resume := make(chan struct{}), make(chan struct{})
	var calls atomic.Int32
	op, srv := newOP(t, devop.Options{
		Registration: func(status *int, body map[string]any) {
			if calls.Add(1) == 1 {
				close(entered)
				<-resume // the first registrant freezes until told
			}
		},
	})
	prefix := newPrefix(t)
	frozen := New(newClient(t), Options{Prefix: prefix, LeaseTTL: ttl})
	frozen.stalled.Store(true) // a frozen process renews nothing
	first := newRP(t, srv, frozen)
	second := newRP(t, srv, New(newClient(t), Options{Prefix: prefix, LeaseTTL: ttl}))

	ctx, cancel := context.WithTimeout(t.Context(), 30*time.Second)
	defer cancel()
	firstDone := make(chan error, 1)
	go func() { firstDone <- first.Ready(ctx) }()
	select {
	case <-entered:
	case err := <-firstDone:
		t.Fatalf("the first replica was ready without registering: %v", err)
	case <-ctx.Done():
		t.Fatal("the first replica never registered")
	}

	start := time.Now()
	if err := second.Ready(ctx); err != nil {
		close(resume)
		t.Fatalf("Ready of the second replica: %v", err)
	}
	took := time.Since(start)
	t.Logf("the second replica was ready after %v (lease TTL %v)", took.Round(time.Millisecond), ttl)
	if limit := ttl + time.Second; took > limit {
		t.Errorf("the second replica was ready after %v, want at most %v", took, limit)
	}
	close(resume)
	if err := <-firstDone; err != nil {
		t.Fatalf("Ready of the resumed first replica: %v", err)
	}

	id := second.Status().ClientID
	if got := first.Status().ClientID; got != id {
		t.Errorf("the resumed replica uses client %q, the other %q", got, id)
	}
	st := op.Stats()
	if st.Registration != 2 || st.RegistrationDelete != 1 {
		t.Errorf("provider saw %d registrations and %d deletions, want 2 and 1 (the superseded client withdrawn)",
			st.Registration, st.RegistrationDelete)
	}
	if clients := op.Clients(); len(clients) != 1 || clients[0].ID != id {
		t.Errorf("the provider keeps %d clients, want only %q", len(clients), id)
	}
	stored, err := frozen.Load(ctx, storeKey(srv))
	if err != nil || !strings.Contains(string(stored), id) {
		t.Errorf("stored credentials %.40q, %v; want those of %q", stored, err, id)
	}
}
