package redisstore

import (
	"context"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/redis/go-redis/v9"
)

// follow reads r's record from cursor, merging what it returns into seen.
func follow(t *testing.T, r oidcrp.Revoker, cursor string, seen map[string]oidcrp.Revocation) string {
	t.Helper()
	entries, next, err := r.Revoked(t.Context(), cursor)
	if err != nil {
		t.Fatalf("Revoked(%q): %v", cursor, err)
	}
	for _, e := range entries {
		seen[e.Key] = e
	}
	return next
}

// TestRevocationsAcrossReplicas writes the record from three replicas, each
// with its own client and several goroutines, while a fourth follows it
// with cursors: the follower must see every entry.
func TestRevocationsAcrossReplicas(t *testing.T) {
	t.Parallel()
	prefix := newPrefix(t)
	const replicas, writers, rounds = 3, 4, 25
	var stores []*Store
	for range replicas {
		stores = append(stores, newStore(t, prefix, 0))
	}
	follower := newStore(t, prefix, 0)
	at := time.Now().Truncate(time.Millisecond)
	until := at.Add(time.Hour)

	seen := map[string]oidcrp.Revocation{}
	cursor := follow(t, follower, "", seen)
	stop := make(chan struct{})
	followed := make(chan struct{})
	reads := 0
	go func() {
		defer close(followed)
		for {
			select {
			case <-stop:
				return
			default:
			}
			entries, next, err := follower.Revoked(t.Context(), cursor)
			if err != nil {
				t.Errorf("Revoked(%q): %v", cursor, err)
				return
			}
			for _, e := range entries {
				seen[e.Key] = e
			}
			cursor = next
			reads++
		}
	}()
	var wg sync.WaitGroup
	for r, s := range stores {
		for w := range writers {
			wg.Go(func() {
				for i := range rounds {
					key := fmt.Sprintf("r%d-w%d-%d", r, w, i)
					if err := s.Revoke(t.Context(), key, at, until); err != nil {
						t.Errorf("Revoke(%q): %v", key, err)
						return
					}
				}
			})
		}
	}
	wg.Wait()
	close(stop)
	<-followed
	follow(t, follower, cursor, seen)
	if len(seen) != replicas*writers*rounds {
		t.Fatalf("the follower saw %d entries, want %d", len(seen), replicas*writers*rounds)
	}
	for key, e := range seen {
		if !e.At.Equal(at) || !e.Until.Equal(until) {
			t.Fatalf("entry %q: at %v, until %v; want %v, %v", key, e.At, e.Until, at, until)
		}
	}
	t.Logf("the follower read the record %d times while %d entries were written", reads, len(seen))
}

// countingHook counts the commands a client sends (a pipeline counts as
// one round trip).
type countingHook struct{ trips atomic.Int64 }

func (h *countingHook) DialHook(next redis.DialHook) redis.DialHook { return next }

func (h *countingHook) ProcessHook(next redis.ProcessHook) redis.ProcessHook {
	return func(ctx context.Context, cmd redis.Cmder) error {
		h.trips.Add(1)
		return next(ctx, cmd)
	}
}

func (h *countingHook) ProcessPipelineHook(next redis.ProcessPipelineHook) redis.ProcessPipelineHook {
	return func(ctx context.Context, cmds []redis.Cmder) error {
		h.trips.Add(1)
		return next(ctx, cmds)
	}
}

// TestRevokedOneRoundTrip checks that reading an unchanged record costs one
// round trip, and one when it changed too.
func TestRevokedOneRoundTrip(t *testing.T) {
	t.Parallel()
	prefix := newPrefix(t)
	client := newClient(t)
	hook := &countingHook{}
	client.AddHook(hook)
	s := New(client, Options{Prefix: prefix})
	writer := newStore(t, prefix, 0)
	now := time.Now()
	for i := range 50 {
		if err := writer.Revoke(t.Context(), fmt.Sprintf("k%d", i), now, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	_, cursor, err := s.Revoked(t.Context(), "") // loads the script
	if err != nil {
		t.Fatal(err)
	}
	for i := range 10 {
		before := hook.trips.Load()
		entries, next, err := s.Revoked(t.Context(), cursor)
		if err != nil {
			t.Fatal(err)
		}
		if n := hook.trips.Load() - before; n != 1 || len(entries) != 0 || next != cursor {
			t.Fatalf("read %d of an unchanged record: %d round trips, %d entries, cursor %q -> %q; want 1, 0, unchanged",
				i, n, len(entries), cursor, next)
		}
	}
	if err := writer.Revoke(t.Context(), "new", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	before := hook.trips.Load()
	entries, _, err := s.Revoked(t.Context(), cursor)
	if err != nil {
		t.Fatal(err)
	}
	if n := hook.trips.Load() - before; n != 1 || len(entries) != 1 || entries[0].Key != "new" {
		t.Fatalf("read after one Revoke: %d round trips, entries %v; want 1 round trip and the new entry", n, entries)
	}
}

// TestRevocationsPruned checks that expired entries leave Redis as later
// writes come, so the record stays bounded by the live entries.
func TestRevocationsPruned(t *testing.T) {
	t.Parallel()
	prefix := newPrefix(t)
	s := newStore(t, prefix, 0)
	now := time.Now()
	for i := range 150 {
		if err := s.Revoke(t.Context(), fmt.Sprintf("short-%d", i), now, now.Add(200*time.Millisecond)); err != nil {
			t.Fatal(err)
		}
	}
	if err := s.Revoke(t.Context(), "live", now, now.Add(time.Hour)); err != nil {
		t.Fatal(err)
	}
	time.Sleep(300 * time.Millisecond)
	entries, _, err := s.Revoked(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if len(entries) != 1 || entries[0].Key != "live" {
		t.Fatalf("Revoked returned %d entries, want only the live one", len(entries))
	}
	// Each write prunes up to pruneBatch expired entries.
	for i := range 2 {
		if err := s.Revoke(t.Context(), fmt.Sprintf("live-%d", i), now, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	keys := s.revocationKeys()
	c := s.client
	for _, k := range keys[1:] {
		var n int64
		if k == keys[1] {
			n = c.HLen(t.Context(), k).Val()
		} else {
			n = c.ZCard(t.Context(), k).Val()
		}
		if n != 3 {
			t.Errorf("%s holds %d entries after the expired ones were pruned, want the 3 live ones", k, n)
		}
	}
}

// TestRevocationsRecordLost checks that when the record vanishes from Redis
// (a flush, a failover to an empty replica) and is written again, a reader
// holding a cursor of the old record reads the new one whole, even once
// the new record's version has passed the cursor's.
func TestRevocationsRecordLost(t *testing.T) {
	t.Parallel()
	prefix := newPrefix(t)
	s := newStore(t, prefix, 0)
	reader := newStore(t, prefix, 0)
	now := time.Now()
	revoke := func(key string) {
		t.Helper()
		if err := s.Revoke(t.Context(), key, now, now.Add(time.Hour)); err != nil {
			t.Fatal(err)
		}
	}
	for i := range 3 {
		revoke(fmt.Sprintf("old-%d", i))
	}
	_, cursor, err := reader.Revoked(t.Context(), "")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.client.Del(t.Context(), s.revocationKeys()...).Err(); err != nil {
		t.Fatal(err)
	}
	for i := range 5 {
		revoke(fmt.Sprintf("new-%d", i))
	}
	seen := map[string]oidcrp.Revocation{}
	follow(t, reader, cursor, seen)
	for i := range 5 {
		if _, ok := seen[fmt.Sprintf("new-%d", i)]; !ok {
			t.Fatalf("a reader with a cursor of the lost record missed new-%d (saw %d entries)", i, len(seen))
		}
	}
}

// TestRevokeRejectsLongKey checks the documented key limit.
func TestRevokeRejectsLongKey(t *testing.T) {
	t.Parallel()
	c := redis.NewClient(&redis.Options{Addr: "127.0.0.1:1", Dialer: func(context.Context, string, string) (net.Conn, error) {
		return nil, fmt.Errorf("no dialing in this test")
	}})
	defer c.Close()
	s := New(c, Options{})
	long := string(make([]byte, 65))
	if err := s.Revoke(t.Context(), long, time.Now(), time.Now().Add(time.Hour)); err == nil {
		t.Fatal("Revoke of a 65-byte key succeeded")
	}
	if err := s.Revoke(t.Context(), "", time.Now(), time.Now().Add(time.Hour)); err == nil {
		t.Fatal("Revoke of an empty key succeeded")
	}
}
