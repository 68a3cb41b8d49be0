package oidcrp

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"strconv"
	"testing"
	"time"

	"github.com/gorilla/sessions"
)

// benchRecordSize is the number of entries in the revocation record of the
// benchmarks below: other sessions ended recently, all live.
const benchRecordSize = 10000

// benchRevocationDoc is a MemoryStore/FileStore revocation record of n live
// entries, as logouts of n other sessions leave it.
func benchRevocationDoc(issuer string, n int) []byte {
	doc := revocationDoc{Version: uint64(n)}
	until := time.Now().Add(time.Hour).UnixMilli()
	for i := range n {
		doc.Entries = append(doc.Entries, revocationRow{Key: revocationKey("sid", "", issuer, "ended-"+strconv.Itoa(i)), At: time.Now().UnixMilli(), Until: until, Version: uint64(i + 1)})
	}
	b, _ := json.Marshal(doc)
	return b
}

// benchRevokingRP is benchRP with benchRecordSize entries in its store's
// revocation record, read into the process's view by the first request.
func benchRevokingRP(b *testing.B) (*RP, *http.Request) {
	rp, req := benchRP(b)
	if err := rp.cfg.Store.Save(context.Background(), revocationsKey, benchRevocationDoc(rp.cfg.Issuer, benchRecordSize)); err != nil {
		b.Fatal(err)
	}
	w := &discardWriter{h: http.Header{}}
	rp.Require(bare).ServeHTTP(w, req)
	rp.revocations.mu.RLock()
	n := len(rp.revocations.entries)
	rp.revocations.mu.RUnlock()
	if w.code != http.StatusNoContent || n != benchRecordSize {
		b.Fatalf("status %d, %d entries in the view", w.code, n)
	}
	b.Cleanup(func() { benchStopWatching(rp) })
	return rp, req
}

// benchStopWatching stops rp's reading of the revocation record, so that
// the relying parties of earlier benchmarks (and their session caches) do
// not keep polling during later ones. A timer that is pending is not
// running its poll, which resets it; Stop succeeds then.
func benchStopWatching(rp *RP) {
	t := rp.revocations.timer.Load()
	for deadline := time.Now().Add(2 * revocationWait); t != nil && !t.Stop() && time.Now().Before(deadline); {
		time.Sleep(time.Millisecond)
	}
}

// benchSessions seals n distinct sessions of the fixture claims and returns
// the Cookie header line of each.
func benchSessions(b *testing.B, rp *RP, n int) [][]string {
	s, err := rp.keys.sealer(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	cb, _ := jsonMarshal(benchClaims())
	lines := make([][]string, n)
	now := time.Now()
	for i := range lines {
		u := &User{Issuer: rp.cfg.Issuer, Subject: "user-" + strconv.Itoa(i), Expiry: now.Add(time.Hour), claims: cb, sid: fmt.Sprintf("bench-session-%08d", i), since: now}
		lines[i] = []string{rp.cfg.SessionName + "=" + s.seal("session", rp.bind(rp.cfg.SessionName), u.encode())}
	}
	return lines
}

// serveLines serves req through h with each Cookie header line in turn.
func serveLines(b *testing.B, h http.Handler, req *http.Request, lines [][]string) {
	b.ReportAllocs()
	w := &discardWriter{h: http.Header{}}
	refused := 0
	i := 0
	for b.Loop() {
		req.Header["Cookie"] = lines[i]
		if i++; i == len(lines) {
			i = 0
		}
		h.ServeHTTP(w, req)
		if w.code != http.StatusNoContent {
			refused++
		}
	}
	if refused > 0 {
		b.Fatalf("%d requests refused", refused)
	}
}

// BenchmarkAuthenticatedRequestRevocations is BenchmarkAuthenticatedRequest
// with the revocation check at work: the store's record holds 10,000 live
// entries of other sessions, all in the process's view. Ratios are taken
// against floor-securecookie of the same run.
func BenchmarkAuthenticatedRequestRevocations(b *testing.B) {
	const distinct = 100000
	b.Run("floor-securecookie", func(b *testing.B) {
		store, req := floorRequest(b)
		serve(b, floorMiddleware(store, bare), req)
	})
	// Seen before: the session was opened once in this process; nothing
	// changed in the record since.
	b.Run("seen-before", func(b *testing.B) {
		rp, req := benchRevokingRP(b)
		serve(b, rp.Require(bare), req)
	})
	// Seen before, but the record changed before every request (another
	// session ended): the check looks up the session's three keys.
	b.Run("seen-before-record-changed", func(b *testing.B) {
		rp, req := benchRevokingRP(b)
		h := rp.Require(bare)
		b.ReportAllocs()
		w := &discardWriter{h: http.Header{}}
		for b.Loop() {
			rp.revocations.gen.Add(1)
			h.ServeHTTP(w, req)
		}
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	})
	// Not seen: the cache is emptied before each request, so the cookie is
	// opened (AES-256-GCM, JSON) and its keys are looked up.
	b.Run("not-seen", func(b *testing.B) {
		rp, req := benchRevokingRP(b)
		h := rp.Require(bare)
		b.ReportAllocs()
		w := &discardWriter{h: http.Header{}}
		for b.Loop() {
			rp.sessions = newSessionCache()
			h.ServeHTTP(w, req)
		}
		if w.code != http.StatusNoContent {
			b.Fatalf("status %d", w.code)
		}
	})
	// 100,000 distinct sessions in turn, each seen once before the timing
	// starts: the cache holds 10,000 at most, so every request opens its
	// cookie, and the cache keeps evicting.
	b.Run("100k-sessions", func(b *testing.B) {
		rp, req := benchRevokingRP(b)
		lines := benchSessions(b, rp, distinct)
		h := rp.Require(bare)
		w := &discardWriter{h: http.Header{}}
		for _, line := range lines {
			req.Header["Cookie"] = line
			if h.ServeHTTP(w, req); w.code != http.StatusNoContent {
				b.Fatalf("status %d", w.code)
			}
		}
		serveLines(b, h, req, lines)
	})
	// The floor with 100,000 distinct cookies in turn, for comparison.
	b.Run("floor-securecookie-100k-sessions", func(b *testing.B) {
		store := sessions.NewCookieStore([]byte("0123456789abcdef0123456789abcdef"), []byte("0123456789abcdef0123456789abcdef"))
		lines := make([][]string, distinct)
		for i := range lines {
			claims := benchClaims()
			claims["sub"] = "user-" + strconv.Itoa(i)
			enc, err := store.Codecs[0].Encode("floor", map[any]any{"claims": claims})
			if err != nil {
				b.Fatal(err)
			}
			lines[i] = []string{"floor=" + enc}
		}
		req := httptest.NewRequest(http.MethodGet, "https://app.example.com/page", nil)
		serveLines(b, floorMiddleware(store, bare), req, lines)
	})
}

// BenchmarkRevocationPoll is one read of the shared record by a process
// that is up to date (what every process does twice a second), for a
// MemoryStore and a FileStore record of 0 and 10,000 entries.
func BenchmarkRevocationPoll(b *testing.B) {
	for _, store := range []string{"MemoryStore", "FileStore"} {
		for _, n := range []int{0, benchRecordSize} {
			b.Run(fmt.Sprintf("%s-%d-entries", store, n), func(b *testing.B) {
				var s CredentialStore = new(MemoryStore)
				if store == "FileStore" {
					s = NewFileStore(b.TempDir() + "/oidc.json")
				}
				ctx := context.Background()
				if err := s.Save(ctx, revocationsKey, benchRevocationDoc("https://login.example.com", n)); err != nil {
					b.Fatal(err)
				}
				v := newRevocations(s, nil, time.Now)
				if err := v.sync(ctx); err != nil {
					b.Fatal(err)
				}
				b.ReportAllocs()
				for b.Loop() {
					if err := v.sync(ctx); err != nil {
						b.Fatal(err)
					}
				}
			})
		}
	}
}
