package oidcrp

import (
	"context"
	"encoding/gob"
	"encoding/json"
	"fmt"
	"github.com/oidcrp/oidcrp/internal/devop"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/sessions"
)

// benchClaims is the fixture claim set: sub, iss, email, name, 10 groups, exp.
func benchClaims() map[string]any {
	groups := make([]any, 10)
	for i := range groups {
		groups[i] = "group-" + string(rune('a'+i)) + "-engineering"
	}
	return map[string]any{
		"sub": "248289761001", "iss": "https://login.example.com", "email": "jane.doe@example.com",
		"name": "Jane Doe", "groups": groups, "exp": time.Now().Add(time.Hour).Unix(),
	}
}

type benchUser struct{ claims map[string]any }

type benchKey struct{}

// floorMiddleware is the obvious hand-written implementation: decode a
// gorilla securecookie (HMAC-SHA256 + AES-CTR, gob) session on every request
// and put its claims in the context.
func floorMiddleware(store *sessions.CookieStore, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		c, err := r.Cookie("floor")
		if err != nil {
			http.Error(w, "no session", http.StatusUnauthorized)
			return
		}
		values := map[any]any{}
		if err := store.Codecs[0].Decode("floor", c.Value, &values); err != nil {
			http.Error(w, "bad session", http.StatusUnauthorized)
			return
		}
		claims, _ := values["claims"].(map[string]any)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), benchKey{}, &benchUser{claims})))
	})
}

// peerMiddleware is the usual gorilla/sessions way: store.Get on every request.
func peerMiddleware(store *sessions.CookieStore, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		r = r.WithContext(r.Context()) // Get caches the session in *r: keep each request fresh
		s, err := store.Get(r, "floor")
		if err != nil || s.IsNew {
			http.Error(w, "no session", http.StatusUnauthorized)
			return
		}
		claims, _ := s.Values["claims"].(map[string]any)
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), benchKey{}, &benchUser{claims})))
	})
}

func init() {
	var groups []any
	gobRegister(map[string]any{}, groups)
}

func gobRegister(vs ...any) {
	for _, v := range vs {
		sessionsGobRegister(v)
	}
}

var bare = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.WriteHeader(http.StatusNoContent) })

// benchRP returns an RP with a session for the fixture claims and the
// request carrying its cookie.
func benchRP(b *testing.B) (*RP, *http.Request) {
	key := make([]byte, 32)
	rp, err := New(Config{
		Issuer: "https://login.example.com", RedirectURL: "https://app.example.com/auth/callback",
		SessionKeys: []Secret{Secret(key)}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil)),
	})
	if err != nil {
		b.Fatal(err)
	}
	claims := benchClaims()
	cb, _ := jsonMarshal(claims)
	u := &User{Issuer: rp.cfg.Issuer, Subject: "248289761001", Expiry: time.Now().Add(time.Hour), claims: cb, sid: "bench-session-id-0000"}
	w := httptest.NewRecorder()
	req := httptest.NewRequest(http.MethodGet, "https://app.example.com/", nil)
	if err := rp.startSession(w, req, u, false); err != nil {
		b.Fatal(err)
	}
	req = httptest.NewRequest(http.MethodGet, "https://app.example.com/page", nil)
	for _, c := range w.Result().Cookies() {
		req.AddCookie(c)
	}
	return rp, req
}

func floorRequest(b *testing.B) (*sessions.CookieStore, *http.Request) {
	store := sessions.NewCookieStore([]byte("0123456789abcdef0123456789abcdef"), []byte("0123456789abcdef0123456789abcdef"))
	enc, err := store.Codecs[0].Encode("floor", map[any]any{"claims": benchClaims()})
	if err != nil {
		b.Fatal(err)
	}
	req := httptest.NewRequest(http.MethodGet, "https://app.example.com/page", nil)
	req.AddCookie(&http.Cookie{Name: "floor", Value: enc})
	return store, req
}

func serve(b *testing.B, h http.Handler, req *http.Request) {
	b.ReportAllocs()
	w := &discardWriter{h: http.Header{}}
	for b.Loop() {
		h.ServeHTTP(w, req)
	}
	if w.code != http.StatusNoContent {
		b.Fatalf("status %d", w.code)
	}
}

type discardWriter struct {
	h    http.Header
	code int
}

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(p []byte) (int, error) { return len(p), nil }
func (w *discardWriter) WriteHeader(code int)        { w.code = code }

// BenchmarkAuthenticatedRequest compares one authenticated request through
// Require with a bare handler, the hand-written securecookie floor, and the
// usual gorilla sessions.Store.Get middleware.
func BenchmarkAuthenticatedRequest(b *testing.B) {
	b.Run("bare", func(b *testing.B) {
		req := httptest.NewRequest(http.MethodGet, "https://app.example.com/page", nil)
		serve(b, bare, req)
	})
	b.Run("floor-securecookie", func(b *testing.B) {
		store, req := floorRequest(b)
		serve(b, floorMiddleware(store, bare), req)
	})
	b.Run("peer-sessions-get", func(b *testing.B) {
		store, req := floorRequest(b)
		serve(b, peerMiddleware(store, bare), req)
	})
	b.Run("oidcrp-require", func(b *testing.B) {
		rp, req := benchRP(b)
		serve(b, rp.Require(bare), req)
	})
	b.Run("oidcrp-require-traced", func(b *testing.B) {
		rp, req := benchRP(b)
		rp.cfg.Trace = &Trace{Start: func(ctx context.Context, ev Event) context.Context { return ctx }}
		serve(b, rp.Require(bare), req)
	})
	b.Run("oidcrp-require-uncached", func(b *testing.B) {
		rp, req := benchRP(b)
		h := rp.Require(bare)
		b.ReportAllocs()
		w := &discardWriter{h: http.Header{}}
		for b.Loop() {
			rp.sessions = newSessionCache()
			h.ServeHTTP(w, req)
		}
	})
}

func jsonMarshal(v any) ([]byte, error) { return json.Marshal(v) }

func sessionsGobRegister(v any) { gob.Register(v) }

func benchTenants(b *testing.B, client *http.Client, max int) *Tenants {
	ts, err := NewTenants(TenantsConfig{
		Resolve:     func(*http.Request) (Tenant, error) { return Tenant{}, nil },
		AllowIssuer: func(string) bool { return true },
		MaxResident: max,
		Base:        Config{HTTPClient: client, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
	})
	if err != nil {
		b.Fatal(err)
	}
	return ts
}

func benchTenant(issuer string, i int) Tenant {
	return Tenant{ID: fmt.Sprintf("tenant-%05d", i), Issuer: issuer, RedirectURL: fmt.Sprintf("https://tenant-%05d.app.example/auth/callback", i)}
}

// BenchmarkTenantLookup finds a resident tenant's RP among 10,000.
func BenchmarkTenantLookup(b *testing.B) {
	const n = 10000
	ts := benchTenants(b, nil, n)
	tenants := make([]Tenant, n)
	for i := range tenants {
		tenants[i] = benchTenant("https://login.example.com", i)
		if _, err := ts.For(tenants[i]); err != nil {
			b.Fatal(err)
		}
	}
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		if _, err := ts.For(tenants[i%n]); err != nil {
			b.Fatal(err)
		}
		i += 7919 // stride through the set
	}
}

// BenchmarkTenantMemory reports the heap held per resident tenant that has
// discovered its provider and obtained credentials (B/tenant).
func BenchmarkTenantMemory(b *testing.B) {
	op := devop.New(devop.Options{})
	srv := httptest.NewTLSServer(op)
	defer srv.Close()
	op.SetIssuer(srv.URL)
	const n = 2000
	for b.Loop() {
		ts := benchTenants(b, srv.Client(), n)
		var before, after runtime.MemStats
		runtime.GC()
		runtime.ReadMemStats(&before)
		for i := range n {
			rp, err := ts.For(benchTenant(op.Issuer(), i))
			if err != nil {
				b.Fatal(err)
			}
			if err := rp.Ready(context.Background()); err != nil {
				b.Fatal(err)
			}
		}
		runtime.GC()
		runtime.ReadMemStats(&after)
		b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/n, "B/tenant")
		runtime.KeepAlive(ts)
	}
}

// BenchmarkLoopbackLoad serves the same handler over loopback HTTP with and
// without Require (authenticated requests) for a fixed time each, in
// alternating rounds, and reports requests per second of each and their
// ratio. It sends traffic to 127.0.0.1 only and stops by itself.
func BenchmarkLoopbackLoad(b *testing.B) {
	const (
		clients = 8
		round   = 700 * time.Millisecond
		rounds  = 3
	)
	hello := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello") })
	rp, authed := benchRP(b)
	servers := map[string]*httptest.Server{
		"bare":      httptest.NewServer(hello),
		"protected": httptest.NewServer(rp.Require(hello)),
	}
	for _, s := range servers {
		defer s.Close()
	}
	run := func(s *httptest.Server) float64 {
		tr := &http.Transport{MaxIdleConnsPerHost: clients}
		defer tr.CloseIdleConnections()
		client := &http.Client{Transport: tr}
		var n atomic.Int64
		deadline := time.Now().Add(round)
		var wg sync.WaitGroup
		for range clients {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for time.Now().Before(deadline) {
					req, _ := http.NewRequest(http.MethodGet, s.URL+"/page", nil)
					for _, c := range authed.Cookies() {
						req.AddCookie(c)
					}
					resp, err := client.Do(req)
					if err != nil {
						b.Error(err)
						return
					}
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != http.StatusOK {
						b.Errorf("status %d", resp.StatusCode)
						return
					}
					n.Add(1)
				}
			}()
		}
		wg.Wait()
		return float64(n.Load()) / round.Seconds()
	}
	for b.Loop() {
		var bare, protected float64
		for range rounds {
			bare += run(servers["bare"])
			protected += run(servers["protected"])
		}
		b.ReportMetric(bare/rounds, "bare-req/s")
		b.ReportMetric(protected/rounds, "protected-req/s")
		b.ReportMetric(protected/bare, "ratio")
	}
}
