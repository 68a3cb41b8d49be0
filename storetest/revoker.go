package storetest

import (
	"context"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
)

// The Revoker subtests of Run, skipped for stores without oidcrp.Revoker.
var revokerTests = []struct {
	name string
	fn   func(t *testing.T, r oidcrp.Revoker)
}{
	{"Revoker/Empty", testRevokedEmpty},
	{"Revoker/RoundTrip", testRevokeRoundTrip},
	{"Revoker/Cursor", testRevokedCursor},
	{"Revoker/RecordAgain", testRevokeAgain},
	{"Revoker/Expiry", testRevokeExpiry},
	{"Revoker/Keys", testRevokeKeys},
	{"Revoker/CancelledContext", testRevokeCancelledContext},
	{"Revoker/Concurrent", testRevokeConcurrent},
}

// revokerTest adapts a Revoker test, skipping it for stores without
// Revoke.
func revokerTest(fn func(t *testing.T, r oidcrp.Revoker)) func(*testing.T, oidcrp.CredentialStore) {
	return func(t *testing.T, s oidcrp.CredentialStore) {
		r, ok := s.(oidcrp.Revoker)
		if !ok {
			t.Skipf("%T does not implement oidcrp.Revoker", s)
		}
		fn(t, r)
	}
}

// Times are compared to the millisecond: a store keeps at least that.
func ms(t time.Time) int64 { return t.UnixMilli() }

// revTimes returns a pair of times for an entry: at in the recent past,
// until an hour or more ahead, both whole milliseconds.
func revTimes(offset time.Duration) (at, until time.Time) {
	now := time.Now().Truncate(time.Millisecond)
	return now.Add(-time.Minute + offset), now.Add(time.Hour + offset)
}

func mustRevoke(t *testing.T, r oidcrp.Revoker, key string, at, until time.Time) {
	t.Helper()
	if err := r.Revoke(t.Context(), key, at, until); err != nil {
		t.Fatalf("Revoke(%q): %v", key, err)
	}
}

// revoked reads the record after since, failing the test on an error, and
// returns the entries by key. An entry returned twice by one call keeps its
// later times, as a reader would merge them.
func revoked(t *testing.T, r oidcrp.Revoker, since string) (map[string]oidcrp.Revocation, string) {
	t.Helper()
	entries, cursor, err := r.Revoked(t.Context(), since)
	if err != nil {
		t.Fatalf("Revoked(%q): %v", since, err)
	}
	return mergeEntries(nil, entries), cursor
}

func mergeEntries(into map[string]oidcrp.Revocation, entries []oidcrp.Revocation) map[string]oidcrp.Revocation {
	if into == nil {
		into = map[string]oidcrp.Revocation{}
	}
	for _, e := range entries {
		if old, ok := into[e.Key]; ok {
			if old.At.After(e.At) {
				e.At = old.At
			}
			if old.Until.After(e.Until) {
				e.Until = old.Until
			}
		}
		into[e.Key] = e
	}
	return into
}

// wantEntry checks that got holds key with the given times.
func wantEntry(t *testing.T, got map[string]oidcrp.Revocation, what, key string, at, until time.Time) {
	t.Helper()
	e, ok := got[key]
	if !ok {
		t.Fatalf("%s: no entry %q among %d returned", what, key, len(got))
	}
	if ms(e.At) != ms(at) || ms(e.Until) != ms(until) {
		t.Fatalf("%s: entry %q has at %v, until %v; want at %v, until %v (to the millisecond)",
			what, key, e.At, e.Until, at, until)
	}
}

func testRevokedEmpty(t *testing.T, r oidcrp.Revoker) {
	got, cursor := revoked(t, r, "")
	if len(got) != 0 {
		t.Fatalf("Revoked(\"\") of an empty store returned %d entries", len(got))
	}
	if got, _ = revoked(t, r, cursor); len(got) != 0 {
		t.Fatalf("Revoked(%q) of an empty store returned %d entries", cursor, len(got))
	}
}

func testRevokeRoundTrip(t *testing.T, r oidcrp.Revoker) {
	at, until := revTimes(0)
	mustRevoke(t, r, "k1", at, until)
	got, _ := revoked(t, r, "")
	wantEntry(t, got, `Revoked("") after Revoke`, "k1", at, until)
	if len(got) != 1 {
		t.Fatalf(`Revoked("") returned %d entries after one Revoke`, len(got))
	}
	// Reading changes nothing.
	got, _ = revoked(t, r, "")
	wantEntry(t, got, `a second Revoked("")`, "k1", at, until)
}

// testRevokedCursor checks that a cursor yields every entry recorded after
// the read that returned it, and, with no writer running meanwhile, none of
// the entries that read already returned: a process reads the record twice
// a second, so a read of an unchanged record must return nothing.
func testRevokedCursor(t *testing.T, r oidcrp.Revoker) {
	const old = 20
	at, until := revTimes(0)
	for i := range old {
		mustRevoke(t, r, fmt.Sprintf("old-%d", i), at, until)
	}
	got, c1 := revoked(t, r, "")
	if len(got) != old {
		t.Fatalf(`Revoked("") returned %d entries after %d Revokes`, len(got), old)
	}
	if got, c := revoked(t, r, c1); len(got) != 0 {
		t.Fatalf("Revoked(cursor) with nothing recorded since returned %d entries (cursor %q, next %q)", len(got), c1, c)
	}
	if got, _ := revoked(t, r, c1); len(got) != 0 {
		t.Fatalf("Revoked(cursor) again returned %d entries", len(got))
	}

	at2, until2 := revTimes(time.Second)
	mustRevoke(t, r, "new-1", at2, until2)
	mustRevoke(t, r, "new-2", at2, until2)
	got, c2 := revoked(t, r, c1)
	wantEntry(t, got, "Revoked(cursor)", "new-1", at2, until2)
	wantEntry(t, got, "Revoked(cursor)", "new-2", at2, until2)
	if len(got) != 2 {
		t.Fatalf("Revoked(cursor) returned %d entries, want the 2 recorded after the cursor", len(got))
	}
	if got, _ := revoked(t, r, c2); len(got) != 0 {
		t.Fatalf("Revoked(next cursor) returned %d entries, want none", len(got))
	}
	// An old cursor stays valid: it yields what was recorded since.
	got, _ = revoked(t, r, c1)
	if len(got) != 2 {
		t.Fatalf("Revoked(older cursor) returned %d entries, want 2", len(got))
	}
	// So does the empty one: everything.
	got, _ = revoked(t, r, "")
	if len(got) != old+2 {
		t.Fatalf(`Revoked("") returned %d entries, want %d`, len(got), old+2)
	}
	for i := range old {
		wantEntry(t, got, `Revoked("")`, fmt.Sprintf("old-%d", i), at, until)
	}
}

// testRevokeAgain checks that recording a key again keeps the later of each
// time, and that a reader past the first recording sees the change.
func testRevokeAgain(t *testing.T, r oidcrp.Revoker) {
	at, until := revTimes(0)
	mustRevoke(t, r, "k", at, until)
	_, c := revoked(t, r, "")

	// A later at with an earlier until: the entry keeps both later times.
	mustRevoke(t, r, "k", at.Add(time.Second), until.Add(-time.Minute))
	got, c := revoked(t, r, c)
	wantEntry(t, got, "Revoked(cursor) after a later at", "k", at.Add(time.Second), until)

	// An earlier at with a later until.
	mustRevoke(t, r, "k", at.Add(-time.Hour), until.Add(time.Hour))
	got, _ = revoked(t, r, c)
	wantEntry(t, got, "Revoked(cursor) after a later until", "k", at.Add(time.Second), until.Add(time.Hour))

	// Earlier times change nothing.
	mustRevoke(t, r, "k", at.Add(-time.Hour), until.Add(-time.Minute))
	got, _ = revoked(t, r, "")
	wantEntry(t, got, "Revoked(\"\") after earlier times", "k", at.Add(time.Second), until.Add(time.Hour))
	if len(got) != 1 {
		t.Fatalf(`Revoked("") returned %d entries for one key recorded 4 times`, len(got))
	}
}

// testRevokeExpiry checks that entries past their until may vanish, while
// entries still live never do, however many expired ones are pruned around
// them.
func testRevokeExpiry(t *testing.T, r oidcrp.Revoker) {
	const short = 300 * time.Millisecond
	now := time.Now().Truncate(time.Millisecond)
	at := now.Add(-time.Minute)
	live := map[string]time.Time{}
	for i := range 10 {
		mustRevoke(t, r, fmt.Sprintf("short-%d", i), at, now.Add(short))
		key := fmt.Sprintf("live-%d", i)
		live[key] = now.Add(time.Hour + time.Duration(i)*time.Second)
		mustRevoke(t, r, key, at, live[key])
	}
	mustRevoke(t, r, "expired", at, now.Add(-time.Second)) // may be dropped at once
	// A short entry made live for longer must not expire with its first until.
	mustRevoke(t, r, "short-0", at, now.Add(time.Hour))
	live["short-0"] = now.Add(time.Hour)

	_, c := revoked(t, r, "")
	time.Sleep(short + 200*time.Millisecond)
	// Writes after the expiry, which may prune.
	for i := range 3 {
		key := fmt.Sprintf("after-%d", i)
		live[key] = time.Now().Add(time.Hour).Truncate(time.Millisecond)
		mustRevoke(t, r, key, at, live[key])
	}
	got, _ := revoked(t, r, "")
	for key, until := range live {
		wantEntry(t, got, `Revoked("") after others expired`, key, at, until)
	}
	for key, e := range got {
		if _, ok := live[key]; !ok && e.Until.After(time.Now()) {
			t.Fatalf("entry %q has until %v, later than recorded", key, e.Until)
		}
	}
	got, _ = revoked(t, r, c)
	for i := range 3 {
		key := fmt.Sprintf("after-%d", i)
		wantEntry(t, got, "Revoked(cursor) after others expired", key, at, live[key])
	}
}

// testRevokeKeys checks that keys of up to 64 bytes, of any characters, are
// recorded exactly and apart.
func testRevokeKeys(t *testing.T, r oidcrp.Revoker) {
	keys := []string{
		"x",
		"X",
		strings.Repeat("a", 64),
		strings.Repeat("a", 63),
		"oidcrp:revocations",
		"{braces}:and%25percent}",
		"spaces and\ttabs\nand newlines",
		`quotes " and back\slashes`,
		"ключ/日本語/🔑",
		"Zm9vYmFyYmF6cXV4LV9fXw", // what the relying party uses: base64url
		"Zm9vYmFyYmF6cXV4LV9fX",
	}
	at, until := revTimes(0)
	for i, key := range keys {
		mustRevoke(t, r, key, at.Add(time.Duration(i)*time.Millisecond), until)
	}
	got, _ := revoked(t, r, "")
	for i, key := range keys {
		wantEntry(t, got, `Revoked("")`, key, at.Add(time.Duration(i)*time.Millisecond), until)
	}
	if len(got) != len(keys) {
		t.Fatalf(`Revoked("") returned %d entries for %d keys`, len(got), len(keys))
	}
}

func testRevokeCancelledContext(t *testing.T, r oidcrp.Revoker) {
	at, until := revTimes(0)
	mustRevoke(t, r, "k", at, until)
	_, c := revoked(t, r, "")
	ctx, cancel := context.WithCancel(t.Context())
	cancel()
	calls := []struct {
		name string
		call func() error
	}{
		{"Revoke", func() error { return r.Revoke(ctx, "k2", at, until) }},
		{`Revoked("")`, func() error { _, _, err := r.Revoked(ctx, ""); return err }},
		{"Revoked(cursor)", func() error { _, _, err := r.Revoked(ctx, c); return err }},
	}
	for _, call := range calls {
		var err error
		withinTimeout(t, call.name+" with a cancelled context", func() { err = call.call() })
		if err == nil {
			t.Errorf("%s with a cancelled context = nil, want a context error", call.name)
		}
	}
}

// testRevokeConcurrent records entries from several goroutines while
// others follow the record with cursors: every entry must land, and every
// follower must see every one.
func testRevokeConcurrent(t *testing.T, r oidcrp.Revoker) {
	const writers, rounds, followers = 6, 10, 3
	at, until := revTimes(0)
	stop := make(chan struct{})
	seen := make([]map[string]oidcrp.Revocation, followers)
	cursors := make([]string, followers)
	var fwg sync.WaitGroup
	for f := range followers {
		fwg.Go(func() {
			got := map[string]oidcrp.Revocation{}
			cursor := ""
			for {
				select {
				case <-stop:
					seen[f], cursors[f] = got, cursor
					return
				default:
				}
				entries, next, err := r.Revoked(t.Context(), cursor)
				if err != nil {
					t.Errorf("Revoked(%q): %v", cursor, err)
					seen[f], cursors[f] = got, cursor
					return
				}
				got, cursor = mergeEntries(got, entries), next
				time.Sleep(time.Millisecond)
			}
		})
	}
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range rounds {
				key := fmt.Sprintf("w%d-%d", w, i)
				if err := r.Revoke(t.Context(), key, at, until); err != nil {
					t.Errorf("Revoke(%q): %v", key, err)
					return
				}
				// Every writer also records one shared key again.
				if err := r.Revoke(t.Context(), "shared", at.Add(time.Duration(w*rounds+i)*time.Millisecond), until); err != nil {
					t.Errorf("Revoke(shared): %v", err)
					return
				}
			}
		})
	}
	wg.Wait()
	close(stop)
	fwg.Wait()
	if t.Failed() {
		return
	}
	want := func(got map[string]oidcrp.Revocation, what string) {
		t.Helper()
		for w := range writers {
			for i := range rounds {
				wantEntry(t, got, what, fmt.Sprintf("w%d-%d", w, i), at, until)
			}
		}
		wantEntry(t, got, what, "shared", at.Add(time.Duration(writers*rounds-1)*time.Millisecond), until)
		if len(got) != writers*rounds+1 {
			t.Fatalf("%s: %d entries, want %d", what, len(got), writers*rounds+1)
		}
	}
	all, _ := revoked(t, r, "")
	want(all, `Revoked("") after concurrent Revokes`)
	for f := range followers {
		// One last read from where the follower stopped.
		rest, _ := revoked(t, r, cursors[f])
		want(mergeEntries(seen[f], slicesOf(rest)), fmt.Sprintf("follower %d, reading with cursors while others wrote", f))
	}
}

func slicesOf(m map[string]oidcrp.Revocation) []oidcrp.Revocation {
	out := make([]oidcrp.Revocation, 0, len(m))
	for _, e := range m {
		out = append(out, e)
	}
	return out
}
