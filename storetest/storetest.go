// Package storetest checks implementations of oidcrp.CredentialStore, and of
// oidcrp.Locker and oidcrp.Revoker when a store provides them, against their
// documented contract.
//
// A store implementation's tests call Run:
//
//	func TestMyStore(t *testing.T) {
//		storetest.Run(t, func(t *testing.T) oidcrp.CredentialStore {
//			return mystore.New(t.TempDir())
//		})
//	}
//
// A store whose locks are leases, which expire when their holder stops
// renewing them (as a store shared over a network needs), also calls
// RunLease, which checks expiry, renewal and fencing across replicas.
package storetest

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
)

// hangTimeout bounds operations that must not block, such as calls with a
// cancelled context, so that a broken store fails instead of hanging.
const hangTimeout = 10 * time.Second

// Run runs the conformance tests against stores made by newStore, which is
// called once per subtest and must return an empty store isolated from every
// other store it returns. The Locker subtests are skipped when the store does
// not implement oidcrp.Locker, and the Revoker subtests when it does not
// implement oidcrp.Revoker. The Revoker subtests take about a second, as
// they wait for entries to expire.
func Run(t *testing.T, newStore func(t *testing.T) oidcrp.CredentialStore) {
	t.Helper()
	tests := []struct {
		name string
		fn   func(t *testing.T, s oidcrp.CredentialStore)
	}{
		{"LoadMissing", testLoadMissing},
		{"RoundTrip", testRoundTrip},
		{"Overwrite", testOverwrite},
		{"Delete", testDelete},
		{"DeleteMissing", testDeleteMissing},
		{"KeysIsolated", testKeysIsolated},
		{"LoadReturnsCopy", testLoadReturnsCopy},
		{"SaveCopiesValue", testSaveCopiesValue},
		{"EmptyValue", testEmptyValue},
		{"OddKeys", testOddKeys},
		{"CancelledContext", testCancelledContext},
		{"Concurrent", testConcurrent},
		{"LargeValue", testLargeValue},
		{"Locker/MutualExclusion", lockerTest(testLockMutualExclusion)},
		{"Locker/Deadline", lockerTest(testLockDeadline)},
		{"Locker/CancelledContext", lockerTest(testLockCancelledContext)},
		{"Locker/UnlockTwice", lockerTest(testUnlockTwice)},
		{"Locker/KeysIndependent", lockerTest(testLockKeysIndependent)},
	}
	for _, rt := range revokerTests {
		tests = append(tests, struct {
			name string
			fn   func(t *testing.T, s oidcrp.CredentialStore)
		}{rt.name, revokerTest(rt.fn)})
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			tt.fn(t, newStore(t))
		})
	}
}

// lockerTest adapts a Locker test, skipping it for stores without Lock.
func lockerTest(fn func(t *testing.T, s oidcrp.CredentialStore, l oidcrp.Locker)) func(*testing.T, oidcrp.CredentialStore) {
	return func(t *testing.T, s oidcrp.CredentialStore) {
		l, ok := s.(oidcrp.Locker)
		if !ok {
			t.Skipf("%T does not implement oidcrp.Locker", s)
		}
		fn(t, s, l)
	}
}

func mustSave(t *testing.T, s oidcrp.CredentialStore, key string, value []byte) {
	t.Helper()
	if err := s.Save(t.Context(), key, value); err != nil {
		t.Fatalf("Save(%q): %v", key, err)
	}
}

// wantValue checks that key holds want.
func wantValue(t *testing.T, s oidcrp.CredentialStore, key string, want []byte) {
	t.Helper()
	got, err := s.Load(t.Context(), key)
	if err != nil {
		t.Fatalf("Load(%q): %v", key, err)
	}
	if !bytes.Equal(got, want) {
		t.Fatalf("Load(%q) = %q, want %q", key, got, want)
	}
}

// wantNotFound checks that key holds nothing.
func wantNotFound(t *testing.T, s oidcrp.CredentialStore, key string) {
	t.Helper()
	got, err := s.Load(t.Context(), key)
	if !errors.Is(err, oidcrp.ErrNotFound) {
		t.Fatalf("Load(%q) = %q, %v; want error matching ErrNotFound", key, got, err)
	}
	if got != nil {
		t.Fatalf("Load(%q) returned %q with ErrNotFound, want nil", key, got)
	}
}

func testLoadMissing(t *testing.T, s oidcrp.CredentialStore) {
	wantNotFound(t, s, "https://op.example")
	mustSave(t, s, "other", []byte("v"))
	wantNotFound(t, s, "https://op.example")
}

func testRoundTrip(t *testing.T, s oidcrp.CredentialStore) {
	value := []byte(`{"client_id":"abc","client_secret":"s3cret"}`)
	mustSave(t, s, "https://op.example", value)
	wantValue(t, s, "https://op.example", value)
}

func testOverwrite(t *testing.T, s oidcrp.CredentialStore) {
	mustSave(t, s, "k", []byte("a much longer first value"))
	mustSave(t, s, "k", []byte("second"))
	wantValue(t, s, "k", []byte("second"))
}

func testDelete(t *testing.T, s oidcrp.CredentialStore) {
	mustSave(t, s, "k", []byte("v"))
	if err := s.Delete(t.Context(), "k"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantNotFound(t, s, "k")
	mustSave(t, s, "k", []byte("again"))
	wantValue(t, s, "k", []byte("again"))
}

func testDeleteMissing(t *testing.T, s oidcrp.CredentialStore) {
	if err := s.Delete(t.Context(), "k"); err != nil {
		t.Fatalf("Delete on an empty store = %v, want nil", err)
	}
	mustSave(t, s, "other", []byte("v"))
	if err := s.Delete(t.Context(), "k"); err != nil {
		t.Fatalf("Delete of an absent key = %v, want nil", err)
	}
	if err := s.Delete(t.Context(), "k"); err != nil {
		t.Fatalf("second Delete of an absent key = %v, want nil", err)
	}
	wantValue(t, s, "other", []byte("v"))
}

func testKeysIsolated(t *testing.T, s oidcrp.CredentialStore) {
	mustSave(t, s, "a", []byte("value a"))
	mustSave(t, s, "b", []byte("value b"))
	mustSave(t, s, "ab", []byte("value ab"))
	wantValue(t, s, "a", []byte("value a"))
	wantValue(t, s, "b", []byte("value b"))
	wantValue(t, s, "ab", []byte("value ab"))
	if err := s.Delete(t.Context(), "a"); err != nil {
		t.Fatalf("Delete: %v", err)
	}
	wantNotFound(t, s, "a")
	wantValue(t, s, "b", []byte("value b"))
	wantValue(t, s, "ab", []byte("value ab"))
}

func testLoadReturnsCopy(t *testing.T, s oidcrp.CredentialStore) {
	mustSave(t, s, "k", []byte("original"))
	got, err := s.Load(t.Context(), "k")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	for i := range got {
		got[i] = 'x'
	}
	wantValue(t, s, "k", []byte("original"))
}

func testSaveCopiesValue(t *testing.T, s oidcrp.CredentialStore) {
	value := []byte("original")
	mustSave(t, s, "k", value)
	for i := range value {
		value[i] = 'x'
	}
	wantValue(t, s, "k", []byte("original"))
}

func testEmptyValue(t *testing.T, s oidcrp.CredentialStore) {
	for _, value := range [][]byte{{}, nil} {
		mustSave(t, s, "k", value)
		got, err := s.Load(t.Context(), "k")
		if err != nil {
			t.Fatalf("Load after saving %#v: %v", value, err)
		}
		if len(got) != 0 {
			t.Fatalf("Load after saving %#v = %q, want empty", value, got)
		}
	}
}

func testOddKeys(t *testing.T, s oidcrp.CredentialStore) {
	keys := []string{
		"https://op.example/a?b=c#tenant",
		"https://op.example/a?b=c#tenant2",
		"https://op.example/a",
		"ключ/日本語/🔑",
		"spaces and\ttabs\nand newlines",
		`quotes " and back\slashes`,
		"<script>&amp;",
		"../../etc/passwd",
		"k.lock",
		"%2F%00",
		"x",
	}
	for i, key := range keys {
		mustSave(t, s, key, []byte("value "+strconv.Itoa(i)))
	}
	for i, key := range keys {
		wantValue(t, s, key, []byte("value "+strconv.Itoa(i)))
	}
	for _, key := range keys[:3] {
		if err := s.Delete(t.Context(), key); err != nil {
			t.Fatalf("Delete(%q): %v", key, err)
		}
	}
	for i, key := range keys {
		if i < 3 {
			wantNotFound(t, s, key)
		} else {
			wantValue(t, s, key, []byte("value "+strconv.Itoa(i)))
		}
	}
}

// withinTimeout runs fn and fails the test if it does not return in time.
func withinTimeout(t *testing.T, what string, fn func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		fn()
	}()
	select {
	case <-done:
	case <-time.After(hangTimeout):
		t.Fatalf("%s did not return within %v", what, hangTimeout)
	}
}

func testCancelledContext(t *testing.T, s oidcrp.CredentialStore) {
	mustSave(t, s, "k", []byte("v"))
	ctx, cancel := context.WithCancel(t.Context())
	cancel()

	calls := []struct {
		name string
		call func() error
	}{
		{"Load", func() error { _, err := s.Load(ctx, "k"); return err }},
		{"Load of an absent key", func() error { _, err := s.Load(ctx, "absent"); return err }},
		{"Save", func() error { return s.Save(ctx, "k", []byte("new")) }},
		{"Delete", func() error { return s.Delete(ctx, "k") }},
	}
	for _, c := range calls {
		var err error
		withinTimeout(t, c.name+" with a cancelled context", func() { err = c.call() })
		if err == nil || errors.Is(err, oidcrp.ErrNotFound) {
			t.Errorf("%s with a cancelled context = %v, want a context error", c.name, err)
		}
	}
}

// concurrentValue returns the value writer w saves: distinct for every
// writer and long enough that a mix of two values would be noticed.
func concurrentValue(w int) []byte {
	return bytes.Repeat([]byte{byte('A' + w)}, 4096)
}

func testConcurrent(t *testing.T, s oidcrp.CredentialStore) {
	const writers, readers, rounds = 8, 8, 10
	const key = "shared"
	valid := func(v []byte) bool {
		for w := range writers {
			if bytes.Equal(v, concurrentValue(w)) {
				return true
			}
		}
		return false
	}
	mustSave(t, s, key, concurrentValue(0))

	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			own := fmt.Sprintf("own-%d", w)
			for r := range rounds {
				if err := s.Save(t.Context(), key, concurrentValue(w)); err != nil {
					t.Errorf("Save: %v", err)
					return
				}
				if err := s.Save(t.Context(), own, []byte(strconv.Itoa(r))); err != nil {
					t.Errorf("Save(%q): %v", own, err)
					return
				}
			}
		})
	}
	for range readers {
		wg.Go(func() {
			for range rounds {
				v, err := s.Load(t.Context(), key)
				if err != nil {
					t.Errorf("Load: %v", err)
					return
				}
				if !valid(v) {
					t.Errorf("Load returned %d bytes that are not one of the saved values", len(v))
					return
				}
			}
		})
	}
	wg.Wait()
	if t.Failed() {
		return
	}
	v, err := s.Load(t.Context(), key)
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if !valid(v) {
		t.Fatalf("final value of %d bytes is not one of the saved values", len(v))
	}
	for w := range writers {
		wantValue(t, s, fmt.Sprintf("own-%d", w), []byte(strconv.Itoa(rounds-1)))
	}
}

func testLargeValue(t *testing.T, s oidcrp.CredentialStore) {
	value := make([]byte, 256<<10)
	for i := range value {
		value[i] = byte(i*7 + i>>8)
	}
	mustSave(t, s, "large", value)
	wantValue(t, s, "large", value)
}

// loadCounter returns the integer stored under key, or 0 if there is none.
func loadCounter(ctx context.Context, s oidcrp.CredentialStore, key string) (int, error) {
	v, err := s.Load(ctx, key)
	if errors.Is(err, oidcrp.ErrNotFound) {
		return 0, nil
	}
	if err != nil {
		return 0, err
	}
	return strconv.Atoi(string(v))
}

func testLockMutualExclusion(t *testing.T, s oidcrp.CredentialStore, l oidcrp.Locker) {
	const workers = 10
	var holders atomic.Int32
	var wg sync.WaitGroup
	for range workers {
		wg.Go(func() {
			ctx := t.Context()
			unlock, err := l.Lock(ctx, "registration")
			if err != nil {
				t.Errorf("Lock: %v", err)
				return
			}
			defer unlock()
			if n := holders.Add(1); n != 1 {
				t.Errorf("%d goroutines hold the lock at once", n)
			}
			defer holders.Add(-1)

			n, err := loadCounter(ctx, s, "counter")
			if err != nil {
				t.Errorf("Load: %v", err)
				return
			}
			time.Sleep(time.Millisecond)
			if err := s.Save(ctx, "counter", []byte(strconv.Itoa(n+1))); err != nil {
				t.Errorf("Save: %v", err)
			}
		})
	}
	wg.Wait()
	n, err := loadCounter(t.Context(), s, "counter")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if n != workers {
		t.Fatalf("counter = %d after %d locked increments", n, workers)
	}
}

// mustLock takes the lock named key within hangTimeout.
func mustLock(t *testing.T, l oidcrp.Locker, key string) (unlock func()) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), hangTimeout)
	defer cancel()
	unlock, err := l.Lock(ctx, key)
	if err != nil {
		t.Fatalf("Lock(%q): %v", key, err)
	}
	return unlock
}

// wantLockBlocked checks that the lock named key stays held by someone else
// for a short while, and that Lock gives up when its context expires.
func wantLockBlocked(t *testing.T, l oidcrp.Locker, key string) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), 100*time.Millisecond)
	defer cancel()
	var unlock func()
	var err error
	withinTimeout(t, "Lock of a held lock with an expiring context", func() { unlock, err = l.Lock(ctx, key) })
	if err == nil {
		unlock()
		t.Fatalf("Lock(%q) succeeded while the lock is held", key)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock(%q) with an expiring context = %v, want an error matching context.DeadlineExceeded", key, err)
	}
}

func testLockDeadline(t *testing.T, s oidcrp.CredentialStore, l oidcrp.Locker) {
	unlock := mustLock(t, l, "k")
	wantLockBlocked(t, l, "k")
	unlock()
	mustLock(t, l, "k")()
}

func testLockCancelledContext(t *testing.T, s oidcrp.CredentialStore, l oidcrp.Locker) {
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	lock := func(what string) {
		t.Helper()
		var unlock func()
		var err error
		withinTimeout(t, what, func() { unlock, err = l.Lock(ctx, "k") })
		if err == nil {
			unlock()
			t.Fatalf("%s succeeded, want an error", what)
		}
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("%s = %v, want an error matching context.Canceled", what, err)
		}
	}
	lock("Lock with a cancelled context")
	held := mustLock(t, l, "k")
	defer held()
	lock("Lock of a held lock with a cancelled context")
}

func testUnlockTwice(t *testing.T, s oidcrp.CredentialStore, l oidcrp.Locker) {
	release := func(unlock func()) {
		t.Helper()
		withinTimeout(t, "unlock", unlock)
	}
	first := mustLock(t, l, "k")
	release(first)
	release(first)
	second := mustLock(t, l, "k")
	release(first) // must not release the lock now held through second
	wantLockBlocked(t, l, "k")
	release(second)
	release(second)
	release(mustLock(t, l, "k"))
}

func testLockKeysIndependent(t *testing.T, s oidcrp.CredentialStore, l oidcrp.Locker) {
	a := mustLock(t, l, "https://op.example/a")
	defer a()
	b := mustLock(t, l, "https://op.example/b")
	defer b()
	wantLockBlocked(t, l, "https://op.example/a")
}

// LeaseOptions describes the stores RunLease tests: stores whose locks are
// leases, which expire when their holder stops renewing them.
type LeaseOptions struct {
	// TTL is the lease duration of the stores newStore and Replica return:
	// how long a lock outlives its holder's last renewal. Keep it short,
	// such as half a second, since the tests wait for several multiples of
	// it; it must be positive.
	TTL time.Duration

	// Replica returns another value of the store s, sharing its backend and
	// data as a second process or replica of an application would open it,
	// with its own connections and its own lease state. Required.
	Replica func(t *testing.T, s oidcrp.CredentialStore) oidcrp.CredentialStore

	// Stall makes s stop renewing the leases it holds, now and later,
	// without releasing them, as if its process had frozen or crashed: each
	// lease then expires TTL after its last renewal. Everything else keeps
	// working, and unlock functions still return. Required.
	Stall func(s oidcrp.CredentialStore)
}

// RunLease runs tests of lease expiry, renewal and fencing against stores
// made by newStore, which is called once per subtest and must return an
// empty store that implements oidcrp.Locker, isolated from every other store
// it returns. Stores sharing a backend are made with opts.Replica. Run the
// conformance tests of Run as well.
func RunLease(t *testing.T, newStore func(t *testing.T) oidcrp.CredentialStore, opts LeaseOptions) {
	t.Helper()
	if opts.TTL <= 0 || opts.Replica == nil || opts.Stall == nil {
		t.Fatal("storetest.RunLease: LeaseOptions needs a positive TTL, Replica and Stall")
	}
	tests := []struct {
		name string
		fn   func(t *testing.T, s oidcrp.CredentialStore, opts LeaseOptions)
	}{
		{"Expiry", testLeaseExpiry},
		{"Fencing", testLeaseFencing},
		{"Renewal", testLeaseRenewal},
		{"ReplicasExclusion", testLeaseReplicasExclusion},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			s := newStore(t)
			if _, ok := s.(oidcrp.Locker); !ok {
				t.Fatalf("%T does not implement oidcrp.Locker", s)
			}
			tt.fn(t, s, opts)
		})
	}
}

// replica returns another value of s's store as a Locker.
func replica(t *testing.T, s oidcrp.CredentialStore, opts LeaseOptions) (oidcrp.CredentialStore, oidcrp.Locker) {
	t.Helper()
	r := opts.Replica(t, s)
	l, ok := r.(oidcrp.Locker)
	if !ok {
		t.Fatalf("replica %T does not implement oidcrp.Locker", r)
	}
	return r, l
}

// lockWithin takes the lock named key, failing the test if that takes
// longer than limit, and returns how long it took.
func lockWithin(t *testing.T, l oidcrp.Locker, key string, limit time.Duration) (unlock func(), took time.Duration) {
	t.Helper()
	ctx, cancel := context.WithTimeout(t.Context(), limit)
	defer cancel()
	start := time.Now()
	unlock, err := l.Lock(ctx, key)
	took = time.Since(start)
	if err != nil {
		t.Fatalf("Lock(%q) after %v: %v", key, took.Round(time.Millisecond), err)
	}
	return unlock, took
}

// wantLockLost checks that err wraps oidcrp.ErrLockLost.
func wantLockLost(t *testing.T, what string, err error) {
	t.Helper()
	if !errors.Is(err, oidcrp.ErrLockLost) {
		t.Fatalf("%s by a holder whose lease passed to another = %v, want an error matching ErrLockLost", what, err)
	}
}

// testLeaseExpiry checks that the lease of a holder that stops renewing it
// passes to a waiting replica after about TTL, and not much sooner.
func testLeaseExpiry(t *testing.T, s oidcrp.CredentialStore, opts LeaseOptions) {
	const key = "https://op.example"
	_, other := replica(t, s, opts)
	held := mustLock(t, s.(oidcrp.Locker), key)
	defer held()
	opts.Stall(s)
	start := time.Now()
	unlock, _ := lockWithin(t, other, key, 2*opts.TTL+hangTimeout)
	defer unlock()
	took := time.Since(start)
	t.Logf("a replica took the stalled lease after %v (TTL %v)", took.Round(time.Millisecond), opts.TTL)
	if took < opts.TTL/2 {
		t.Fatalf("a replica took the lock %v after its holder stalled, before the lease could expire (TTL %v)", took, opts.TTL)
	}
	if limit := 2*opts.TTL + time.Second; took > limit {
		t.Fatalf("a replica took the lock %v after its holder stalled, want at most %v (TTL %v)", took, limit, opts.TTL)
	}
}

// testLeaseFencing checks that a holder whose lease passed to a replica can
// no longer write the key it locked, that its unlock leaves the successor's
// lock alone, and that its other keys are unaffected.
func testLeaseFencing(t *testing.T, old oidcrp.CredentialStore, opts LeaseOptions) {
	const key = "https://op.example"
	mustSave(t, old, key, []byte("original"))
	mustSave(t, old, "other", []byte("other"))
	stale := mustLock(t, old.(oidcrp.Locker), key)
	if err := old.Save(t.Context(), key, []byte("by the first holder")); err != nil {
		t.Fatalf("Save by the lease holder: %v", err)
	}
	opts.Stall(old)

	next, nextLocker := replica(t, old, opts)
	successor, _ := lockWithin(t, nextLocker, key, 2*opts.TTL+hangTimeout)
	defer successor()
	wantValue(t, next, key, []byte("by the first holder"))

	wantLockLost(t, "Save", old.Save(t.Context(), key, []byte("stale")))
	wantLockLost(t, "Delete", old.Delete(t.Context(), key))
	wantValue(t, next, key, []byte("by the first holder"))
	mustSave(t, next, key, []byte("by the successor"))
	wantLockLost(t, "Save after the successor's", old.Save(t.Context(), key, []byte("stale")))
	wantLockLost(t, "Delete after the successor's Save", old.Delete(t.Context(), key))
	wantValue(t, next, key, []byte("by the successor"))
	wantValue(t, old, key, []byte("by the successor"))

	// Keys the old holder did not lock are not fenced.
	mustSave(t, old, "other", []byte("still writable"))
	wantValue(t, next, "other", []byte("still writable"))

	// The old holder's unlock must not release the successor's lock.
	withinTimeout(t, "unlock of a lost lease", stale)
	_, third := replica(t, old, opts)
	wantLockBlocked(t, third, key)
	wantLockBlocked(t, old.(oidcrp.Locker), key)
	withinTimeout(t, "unlock", successor)
	lockWithin(t, third, key, hangTimeout) // released, not expired
}

// testLeaseRenewal checks that a live holder keeps its lease well past TTL
// and that unlock releases it at once rather than letting it expire.
func testLeaseRenewal(t *testing.T, s oidcrp.CredentialStore, opts LeaseOptions) {
	const key = "https://op.example"
	unlock := mustLock(t, s.(oidcrp.Locker), key)
	_, other := replica(t, s, opts)

	ctx, cancel := context.WithTimeout(t.Context(), 3*opts.TTL)
	defer cancel()
	var got func()
	var err error
	withinTimeout(t, "Lock of a renewed lease", func() { got, err = other.Lock(ctx, key) })
	if err == nil {
		got()
		t.Fatalf("a replica took the lock within 3×TTL (%v) while its holder was alive", 3*opts.TTL)
	}
	if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a held lease with an expiring context = %v, want an error matching context.DeadlineExceeded", err)
	}
	if err := s.Save(t.Context(), key, []byte("renewed")); err != nil {
		t.Fatalf("Save by a holder after 3×TTL: %v", err)
	}
	withinTimeout(t, "unlock", unlock)
	next, took := lockWithin(t, other, key, hangTimeout)
	defer next()
	if took > opts.TTL*3/4 {
		t.Fatalf("a replica waited %v for a released lease (TTL %v): unlock should release it, not let it expire", took, opts.TTL)
	}
}

// testLeaseReplicasExclusion checks mutual exclusion between replicas.
func testLeaseReplicasExclusion(t *testing.T, s oidcrp.CredentialStore, opts LeaseOptions) {
	const replicas, workers = 3, 10
	const key = "registration"
	stores := []oidcrp.CredentialStore{s}
	for len(stores) < replicas {
		r, _ := replica(t, s, opts)
		stores = append(stores, r)
	}
	var holders atomic.Int32
	var wg sync.WaitGroup
	for _, st := range stores {
		for range workers {
			wg.Go(func() {
				ctx := t.Context()
				unlock, err := st.(oidcrp.Locker).Lock(ctx, key)
				if err != nil {
					t.Errorf("Lock: %v", err)
					return
				}
				defer unlock()
				if n := holders.Add(1); n != 1 {
					t.Errorf("%d replicas hold the lock at once", n)
				}
				defer holders.Add(-1)
				n, err := loadCounter(ctx, st, "counter")
				if err != nil {
					t.Errorf("Load: %v", err)
					return
				}
				if err := st.Save(ctx, "counter", []byte(strconv.Itoa(n+1))); err != nil {
					t.Errorf("Save: %v", err)
				}
			})
		}
	}
	wg.Wait()
	n, err := loadCounter(t.Context(), s, "counter")
	if err != nil {
		t.Fatalf("Load: %v", err)
	}
	if n != replicas*workers {
		t.Fatalf("counter = %d after %d locked increments", n, replicas*workers)
	}
}
