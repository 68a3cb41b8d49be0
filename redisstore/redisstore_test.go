package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/storetest"
	"github.com/redis/go-redis/v9"
)

// redisAddr returns the address of the Redis server the tests use, from
// OIDCRP_REDIS_ADDR. Without it the test is skipped, or fails under CI.
func redisAddr(t testing.TB) string {
	t.Helper()
	addr := os.Getenv("OIDCRP_REDIS_ADDR")
	if addr == "" {
		const msg = "OIDCRP_REDIS_ADDR is not set: run ./scripts/test.sh, which starts redis-server " +
			"(or export the OIDCRP_REDIS_ADDR=... line printed by scripts/redis.sh start)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return addr
}

// newClient returns a client of the test Redis, closed when the test ends:
// each Store of a test gets its own, as separate replicas would.
func newClient(t testing.TB) *redis.Client {
	t.Helper()
	c := redis.NewClient(&redis.Options{Addr: redisAddr(t), ContextTimeoutEnabled: true})
	t.Cleanup(func() { c.Close() })
	if err := c.Ping(t.Context()).Err(); err != nil {
		t.Fatalf("Redis at OIDCRP_REDIS_ADDR=%s does not answer: %v", redisAddr(t), err)
	}
	return c
}

// newPrefix returns a key prefix unique to this test, so that tests can run
// in parallel on one server, and deletes the test's keys when it ends.
func newPrefix(t testing.TB) string {
	t.Helper()
	var b [8]byte
	rand.Read(b[:])
	prefix := "oidcrp-test:" + hex.EncodeToString(b[:]) + ":"
	addr := redisAddr(t)
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		iter := c.Scan(ctx, 0, prefix+"*", 1000).Iterator()
		var keys []string
		for iter.Next(ctx) {
			keys = append(keys, iter.Val())
		}
		if len(keys) > 0 {
			c.Del(ctx, keys...)
		}
	})
	return prefix
}

// newStore returns a Store of its own client under prefix.
func newStore(t testing.TB, prefix string, ttl time.Duration) *Store {
	t.Helper()
	return New(newClient(t), Options{Prefix: prefix, LeaseTTL: ttl, PollInterval: 10 * time.Millisecond})
}

func TestStore(t *testing.T) {
	t.Parallel()
	redisAddr(t) // skip or fail once, not in every subtest
	storetest.Run(t, func(t *testing.T) oidcrp.CredentialStore {
		return newStore(t, newPrefix(t), 0)
	})
}

func TestLease(t *testing.T) {
	t.Parallel()
	redisAddr(t)
	const ttl = 400 * time.Millisecond
	storetest.RunLease(t, func(t *testing.T) oidcrp.CredentialStore {
		return newStore(t, newPrefix(t), ttl)
	}, storetest.LeaseOptions{
		TTL: ttl,
		Replica: func(t *testing.T, s oidcrp.CredentialStore) oidcrp.CredentialStore {
			return newStore(t, s.(*Store).prefix, ttl)
		},
		Stall: func(s oidcrp.CredentialStore) { s.(*Store).stalled.Store(true) },
	})
}

func TestDefaults(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1"})
	defer c.Close()
	s := New(c, Options{})
	if s.prefix != DefaultPrefix || s.ttl != DefaultLeaseTTL || s.poll != DefaultPollInterval {
		t.Errorf("New with zero Options: prefix %q, TTL %v, poll %v", s.prefix, s.ttl, s.poll)
	}
	if s := New(c, Options{LeaseTTL: time.Millisecond}); s.ttl != MinLeaseTTL {
		t.Errorf("LeaseTTL 1ms became %v, want %v", s.ttl, MinLeaseTTL)
	}
	if s := New(c, Options{LeaseTTL: 1500*time.Millisecond + time.Microsecond}); s.ttl != 1500*time.Millisecond {
		t.Errorf("LeaseTTL 1.500001s became %v, want 1.5s", s.ttl)
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Error("New(nil, ...) did not panic")
			}
		}()
		New(nil, Options{})
	}()
}

// hashTag returns the part of a Redis key that Redis Cluster hashes.
func hashTag(key string) string {
	if i := strings.IndexByte(key, '{'); i >= 0 {
		if j := strings.IndexByte(key[i+1:], '}'); j > 0 {
			return key[i+1 : i+1+j]
		}
	}
	return key
}

func TestKeyLayout(t *testing.T) {
	t.Parallel()
	prefix := newPrefix(t)
	s := newStore(t, prefix, 0)
	rdb := newClient(t)
	ctx := t.Context()

	keys := map[string]string{ // store key -> Redis key of its value
		"https://op.example":    prefix + "{https://op.example}:v",
		"a}b%c{d":               prefix + "{a%7Db%25c{d}:v",
		"a%7D":                  prefix + "{a%257D}:v",
		"a}":                    prefix + "{a%7D}:v",
		"}":                     prefix + "{%7D}:v",
		"{}":                    prefix + "{{%7D}:v",
		"ключ/🔑 #frag\n":        prefix + "{ключ/🔑 #frag\n}:v",
		"x}:v":                  prefix + "{x%7D:v}:v",
		"oidcrp:session-keys":   prefix + "{oidcrp:session-keys}:v",
		"with\x00nul and space": prefix + "{with\x00nul and space}:v",
	}
	for key, want := range keys {
		if err := s.Save(ctx, key, []byte(key)); err != nil {
			t.Fatalf("Save(%q): %v", key, err)
		}
		got, err := rdb.Get(ctx, want).Result()
		if err != nil || got != key {
			t.Errorf("Redis key %q = %q, %v; want the value of %q", want, got, err, key)
		}
		// All keys of one store key share a Redis Cluster hash slot.
		tag := hashTag(s.name(key, "v"))
		for _, kind := range []string{"lock", "gen"} {
			if other := hashTag(s.name(key, kind)); other != tag {
				t.Errorf("key %q: hash tag of %s key %q differs from the value's %q", key, kind, other, tag)
			}
		}
		if tag == "" || tag == s.name(key, "v") {
			t.Errorf("key %q: Redis key %q has no hash tag", key, s.name(key, "v"))
		}
	}
	n, err := rdb.Keys(ctx, prefix+"*").Result()
	if err != nil || len(n) != len(keys) {
		t.Errorf("Redis holds %d keys under the prefix (%v), want %d", len(n), err, len(keys))
	}
}

// tokenRE matches a lease token: the generation and a random nonce.
var tokenRE = regexp.MustCompile(`^([0-9]+):[0-9a-f]{32}$`)

func TestTokensCarryGeneration(t *testing.T) {
	t.Parallel()
	prefix := newPrefix(t)
	a, b := newStore(t, prefix, 0), newStore(t, prefix, 0)
	rdb := newClient(t)
	const key = "https://op.example"
	seen := map[string]bool{}
	for i, s := range []*Store{a, b, a} {
		unlock, err := s.Lock(t.Context(), key)
		if err != nil {
			t.Fatal(err)
		}
		token, err := rdb.Get(t.Context(), s.name(key, "lock")).Result()
		if err != nil {
			t.Fatalf("lock key: %v", err)
		}
		if l := s.lease(key); l == nil || l.token != token {
			t.Fatalf("lock key holds %q, the Store's lease %+v", token, l)
		}
		m := tokenRE.FindStringSubmatch(token)
		if m == nil || m[1] != strconv.Itoa(i+1) {
			t.Fatalf("acquisition %d has token %q, want generation %d and a nonce", i+1, token, i+1)
		}
		if seen[token] {
			t.Fatalf("token %q reused", token)
		}
		seen[token] = true
		unlock()
		if n, _ := rdb.Exists(t.Context(), s.name(key, "lock")).Result(); n != 0 {
			t.Fatalf("lock key still exists after unlock")
		}
		if s.lease(key) != nil {
			t.Fatalf("Store still records a lease after unlock")
		}
	}
	if holder, err := rdb.HGet(t.Context(), a.name(key, "gen"), "holder").Result(); !errors.Is(err, redis.Nil) {
		t.Errorf("holder after unlock = %q, %v; want none", holder, err)
	}
}

// TestExpiredLeaseKeptWhenNotTaken checks that a holder whose lease expired
// while nobody else wanted the lock keeps it at its next write.
func TestExpiredLeaseKeptWhenNotTaken(t *testing.T) {
	t.Parallel()
	const ttl = 200 * time.Millisecond
	prefix := newPrefix(t)
	a, b := newStore(t, prefix, ttl), newStore(t, prefix, ttl)
	rdb := newClient(t)
	const key = "https://op.example"
	a.stalled.Store(true)
	unlock, err := a.Lock(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	time.Sleep(3 * ttl)
	if n, _ := rdb.Exists(t.Context(), a.name(key, "lock")).Result(); n != 0 {
		t.Fatal("the stalled lease did not expire")
	}
	if err := a.Save(t.Context(), key, []byte("late")); err != nil {
		t.Fatalf("Save by a holder whose expired lease nobody took: %v", err)
	}
	if got, _ := rdb.Get(t.Context(), a.name(key, "lock")).Result(); got != a.lease(key).token {
		t.Fatalf("lock key = %q after the late Save, want the holder's token again", got)
	}
	ctx, cancel := context.WithTimeout(t.Context(), ttl/2)
	defer cancel()
	if u, err := b.Lock(ctx, key); err == nil {
		u()
		t.Fatal("a replica took the lock right after the holder's late Save")
	}
	if err := a.Delete(t.Context(), key); err != nil {
		t.Fatalf("Delete by the holder: %v", err)
	}
	unlock()
	ctx, cancel = context.WithTimeout(t.Context(), ttl/2)
	defer cancel()
	u, err := b.Lock(ctx, key)
	if err != nil {
		t.Fatalf("Lock after unlock: %v", err)
	}
	u()
}

// TestRenewalDetectsLoss checks that the renewal notices a lease taken by
// another holder, after which writes fail without asking Redis, until
// unlock, after which they are plain writes again.
func TestRenewalDetectsLoss(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	prefix := newPrefix(t)
	a, b := newStore(t, prefix, ttl), newStore(t, prefix, ttl)
	rdb := newClient(t)
	const key = "https://op.example"
	unlock, err := a.Lock(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer unlock()
	l := a.lease(key)
	// Someone deletes the lock (an operator, an eviction); b takes it.
	rdb.Del(t.Context(), a.name(key, "lock"))
	ub, err := b.Lock(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	defer ub()
	deadline := time.Now().Add(2 * ttl)
	for !l.lost.Load() {
		if time.Now().After(deadline) {
			t.Fatal("the renewal did not notice the lost lease")
		}
		time.Sleep(10 * time.Millisecond)
	}
	select {
	case <-l.done:
	case <-time.After(time.Second):
		t.Fatal("renewal goes on after the lease was lost")
	}
	if err := b.Save(t.Context(), key, []byte("b")); err != nil {
		t.Fatal(err)
	}
	err = a.Save(t.Context(), key, []byte("a"))
	if !errors.Is(err, oidcrp.ErrLockLost) || !strings.HasPrefix(err.Error(), "oidcrp: redis store: ") {
		t.Fatalf("Save after the loss = %v, want an oidcrp: redis store: error matching ErrLockLost", err)
	}
	unlock()
	if got, _ := rdb.Get(t.Context(), b.name(key, "lock")).Result(); got != b.lease(key).token {
		t.Fatalf("the lost holder's unlock changed the lock to %q", got)
	}
	if err := a.Save(t.Context(), key, []byte("a after unlock")); err != nil {
		t.Fatalf("Save after unlocking a lost lease = %v, want a plain write", err)
	}
}

// TestRenewalKeepsLease checks that a live holder keeps its lease for many
// TTLs.
func TestRenewalKeepsLease(t *testing.T) {
	t.Parallel()
	const ttl = 200 * time.Millisecond
	prefix := newPrefix(t)
	a, b := newStore(t, prefix, ttl), newStore(t, prefix, ttl)
	const key = "https://op.example"
	unlock, err := a.Lock(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	token := a.lease(key).token
	ctx, cancel := context.WithTimeout(t.Context(), 10*ttl)
	defer cancel()
	if u, err := b.Lock(ctx, key); err == nil {
		u()
		t.Fatalf("a replica took a live holder's lock within 10×TTL")
	} else if !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Lock = %v, want an error matching context.DeadlineExceeded", err)
	}
	if l := a.lease(key); l == nil || l.token != token || l.lost.Load() {
		t.Fatalf("the holder's lease changed or was lost: %+v", l)
	}
	if err := a.Save(t.Context(), key, []byte("v")); err != nil {
		t.Fatalf("Save by the holder after 10×TTL: %v", err)
	}
	unlock()
}

// TestReplicasCounter runs 50 locked increments in each of 3 replicas.
func TestReplicasCounter(t *testing.T) {
	t.Parallel()
	const replicas, workers = 3, 50
	prefix := newPrefix(t)
	const key = "counter"
	var holders, maxHolders atomic.Int32
	var wg sync.WaitGroup
	for range replicas {
		s := newStore(t, prefix, 2*time.Second)
		for range workers {
			wg.Go(func() {
				ctx := t.Context()
				unlock, err := s.Lock(ctx, key)
				if err != nil {
					t.Errorf("Lock: %v", err)
					return
				}
				defer unlock()
				n := holders.Add(1)
				defer holders.Add(-1)
				for m := maxHolders.Load(); n > m && !maxHolders.CompareAndSwap(m, n); m = maxHolders.Load() {
				}
				v := 0
				b, err := s.Load(ctx, key)
				switch {
				case errors.Is(err, oidcrp.ErrNotFound):
				case err != nil:
					t.Errorf("Load: %v", err)
					return
				default:
					if v, err = strconv.Atoi(string(b)); err != nil {
						t.Errorf("counter %q: %v", b, err)
						return
					}
				}
				if err := s.Save(ctx, key, []byte(strconv.Itoa(v+1))); err != nil {
					t.Errorf("Save: %v", err)
				}
			})
		}
	}
	wg.Wait()
	b, err := newStore(t, prefix, 0).Load(t.Context(), key)
	if err != nil {
		t.Fatal(err)
	}
	if string(b) != strconv.Itoa(replicas*workers) {
		t.Fatalf("counter = %s after %d locked increments", b, replicas*workers)
	}
	if m := maxHolders.Load(); m != 1 {
		t.Fatalf("%d goroutines held the lock at once", m)
	}
}

func TestErrors(t *testing.T) {
	t.Parallel()
	s := newStore(t, newPrefix(t), 0)
	ctx := t.Context()
	const prefix = "oidcrp: redis store: "

	_, err := s.Load(ctx, "absent")
	if !errors.Is(err, oidcrp.ErrNotFound) || !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("Load of an absent key = %v", err)
	}
	for name, call := range map[string]func() error{
		"Load":   func() error { _, err := s.Load(ctx, ""); return err },
		"Save":   func() error { return s.Save(ctx, "", nil) },
		"Delete": func() error { return s.Delete(ctx, "") },
		"Lock":   func() error { _, err := s.Lock(ctx, ""); return err },
	} {
		if err := call(); err == nil || !strings.HasPrefix(err.Error(), prefix) {
			t.Errorf("%s with an empty key = %v, want an error", name, err)
		}
	}

	cancelled, cancel := context.WithCancel(ctx)
	cancel()
	if _, err := s.Lock(cancelled, "k"); !errors.Is(err, context.Canceled) || !strings.HasPrefix(err.Error(), prefix) {
		t.Errorf("Lock with a cancelled context = %v", err)
	}

	// A Redis that does not answer.
	dead := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", DialTimeout: 200 * time.Millisecond, DialerRetries: 1, MaxRetries: -1})
	defer dead.Close()
	d := New(dead, Options{})
	for name, call := range map[string]func() error{
		"Load":   func() error { _, err := d.Load(ctx, "k"); return err },
		"Save":   func() error { return d.Save(ctx, "k", []byte("v")) },
		"Delete": func() error { return d.Delete(ctx, "k") },
		"Lock":   func() error { _, err := d.Lock(ctx, "k"); return err },
	} {
		err := call()
		if err == nil || !strings.HasPrefix(err.Error(), prefix) || errors.Is(err, oidcrp.ErrNotFound) {
			t.Errorf("%s on an unreachable Redis = %v, want an error", name, err)
		}
	}
	short, cancel := context.WithTimeout(ctx, 50*time.Millisecond)
	defer cancel()
	time.Sleep(60 * time.Millisecond)
	if err := d.Save(short, "k", nil); !errors.Is(err, context.DeadlineExceeded) {
		t.Errorf("Save with an expired context = %v, want an error matching context.DeadlineExceeded", err)
	}
}
