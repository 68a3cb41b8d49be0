package keyedmutex

import (
	"context"
	"errors"
	"sync"
	"testing"
	"time"
)

func lock(t *testing.T, m *Mutex, key string) func() {
	t.Helper()
	unlock, err := m.Lock(context.Background(), key)
	if err != nil {
		t.Fatalf("Lock(%q) = %v", key, err)
	}
	return unlock
}

// waitSize fails the test if m does not reach n entries within a second.
func waitSize(t *testing.T, m *Mutex, n int) {
	t.Helper()
	deadline := time.Now().Add(time.Second)
	for m.size() != n {
		if time.Now().After(deadline) {
			t.Fatalf("the mutex has %d entries after 1s, want %d", m.size(), n)
		}
		time.Sleep(time.Millisecond)
	}
}

func TestExcludesSameKey(t *testing.T) {
	var m Mutex
	unlock := lock(t, &m, "k")
	got := make(chan func())
	go func() {
		u, err := m.Lock(context.Background(), "k")
		if err != nil {
			t.Errorf("second Lock = %v", err)
		}
		got <- u
	}()
	waitSize(t, &m, 1)
	select {
	case <-got:
		t.Fatal("a second Lock of a held key returned before the unlock")
	case <-time.After(50 * time.Millisecond):
	}
	unlock()
	select {
	case u := <-got:
		u()
	case <-time.After(5 * time.Second):
		t.Fatal("the second Lock still waits 5s after the unlock")
	}
}

func TestOtherKeysDoNotWait(t *testing.T) {
	var m Mutex
	defer lock(t, &m, "a")()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	unlock, err := m.Lock(ctx, "b")
	if err != nil {
		t.Fatalf("Lock(b) while a is held = %v", err)
	}
	unlock()
}

// TestMutualExclusion counts holders of one key from many goroutines; run
// with -race it also checks that the lock orders their memory accesses.
func TestMutualExclusion(t *testing.T) {
	var m Mutex
	var (
		holders, maxHolders int
		counter             int
		wg                  sync.WaitGroup
		mu                  sync.Mutex
	)
	for range 20 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				unlock, err := m.Lock(context.Background(), "k")
				if err != nil {
					t.Error(err)
					return
				}
				mu.Lock()
				holders++
				maxHolders = max(maxHolders, holders)
				mu.Unlock()
				counter++ // guarded by the keyed lock alone
				mu.Lock()
				holders--
				mu.Unlock()
				unlock()
			}
		}()
	}
	wg.Wait()
	if maxHolders != 1 {
		t.Errorf("%d goroutines held the lock at once, want 1", maxHolders)
	}
	if counter != 20*50 {
		t.Errorf("counter = %d, want %d", counter, 20*50)
	}
	if n := m.size(); n != 0 {
		t.Errorf("%d entries left after every unlock, want 0", n)
	}
}

func TestCanceledContext(t *testing.T) {
	var m Mutex
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if u, err := m.Lock(ctx, "free"); !errors.Is(err, context.Canceled) || u != nil {
		t.Fatalf("Lock with a canceled context on a free key = %v, %v; want nil, context.Canceled", u != nil, err)
	}
	if n := m.size(); n != 0 {
		t.Errorf("%d entries after a canceled Lock, want 0", n)
	}
}

func TestCancelWhileWaiting(t *testing.T) {
	var m Mutex
	unlock := lock(t, &m, "k")
	ctx, cancel := context.WithCancel(context.Background())
	errc := make(chan error, 1)
	go func() {
		u, err := m.Lock(ctx, "k")
		if u != nil {
			u()
		}
		errc <- err
	}()
	waitSize(t, &m, 1)
	time.Sleep(10 * time.Millisecond) // let the waiter reach its select
	cancel()
	select {
	case err := <-errc:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("waiting Lock after cancel = %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a waiting Lock did not return within 5s of its context's cancellation")
	}
	// The abandoned wait took nothing: the key is still held by us, and
	// becomes free at our unlock.
	short, cancelShort := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancelShort()
	if _, err := m.Lock(short, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock of a held key = %v, want context.DeadlineExceeded", err)
	}
	unlock()
	lock(t, &m, "k")()
	if n := m.size(); n != 0 {
		t.Errorf("%d entries left, want 0", n)
	}
}

func TestUnusedEntriesAreDropped(t *testing.T) {
	var m Mutex
	u1 := lock(t, &m, "a")
	u2 := lock(t, &m, "b")
	if n := m.size(); n != 2 {
		t.Fatalf("%d entries with two keys held, want 2", n)
	}
	u1()
	if n := m.size(); n != 1 {
		t.Errorf("%d entries after one unlock, want 1", n)
	}
	u2()
	if n := m.size(); n != 0 {
		t.Errorf("%d entries after both unlocks, want 0", n)
	}
	for i := range 100 {
		lock(t, &m, string(rune('a'+i%26))+"-"+time.Now().String())()
	}
	if n := m.size(); n != 0 {
		t.Errorf("%d entries after 100 lock/unlock of distinct keys, want 0", n)
	}
}

// returnsSoon fails the test if f does not return within 5 seconds.
func returnsSoon(t *testing.T, what string, f func()) {
	t.Helper()
	done := make(chan struct{})
	go func() {
		defer close(done)
		f()
	}()
	select {
	case <-done:
	case <-time.After(5 * time.Second):
		t.Fatalf("%s did not return within 5s", what)
	}
}

func TestUnlockIsIdempotent(t *testing.T) {
	var m Mutex
	unlock := lock(t, &m, "k")
	unlock()
	u2 := lock(t, &m, "k") // a second holder
	returnsSoon(t, "a repeated unlock of an old hold", unlock)
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Millisecond)
	defer cancel()
	if _, err := m.Lock(ctx, "k"); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock after a repeated unlock of an old hold = %v, want context.DeadlineExceeded (key still held)", err)
	}
	u2()
	returnsSoon(t, "a repeated unlock", u2)
	if n := m.size(); n != 0 {
		t.Errorf("%d entries after repeated unlocks, want 0", n)
	}
	lock(t, &m, "k")()
}
