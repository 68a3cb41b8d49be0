package oidcrp

import (
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// hostTenantEnv is an application whose one tenant's Resolve builds the
// RedirectURL from the request's Host, as the README once suggested.
type hostTenantEnv struct {
	t       *testing.T
	tenants *Tenants
	app     *httptest.Server
	client  *http.Client
	logs    *syncBuffer
}

func newHostTenantEnv(t *testing.T, issuer func() string, client *http.Client, interval time.Duration) *hostTenantEnv {
	t.Helper()
	e := &hostTenantEnv{t: t, client: client, logs: &syncBuffer{}}
	e.app = newTLSServer(nil)
	t.Cleanup(e.app.Close)
	var err error
	e.tenants, err = NewTenants(TenantsConfig{
		Resolve: func(r *http.Request) (Tenant, error) {
			return Tenant{ID: "acme", Issuer: issuer(), RedirectURL: "https://" + r.Host + "/auth/callback"}, nil
		},
		AllowIssuer:    func(string) bool { return true },
		ChangeInterval: interval,
		Base:           Config{HTTPClient: client, Logger: slog.New(slog.NewTextHandler(e.logs, nil))},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.app.Config.Handler = e.tenants.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	return e
}

// visit makes an anonymous browser navigation with the given Host header
// and returns the status.
func (e *hostTenantEnv) visit(host string) int {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.app.URL+"/home", nil)
	req.Host = host
	req.Header.Set("Accept", html)
	c := &http.Client{Transport: e.client.Transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode
}

var hostSpellings = []string{"acme.example.com", "ACME.example.com", "acme.example.com."}

// TestTenantHostSpellingsDoNotStorm: requests alternating the spelling of
// the Host must not rebuild the tenant and update its registration on
// every request.
func TestTenantHostSpellingsDoNotStorm(t *testing.T) {
	clock := &fakeClock{}
	op, srv := newOP(t, devop.Options{AutoLogin: true, Now: clock.Now})
	e := newHostTenantEnv(t, op.Issuer, srv.Client(), 0)
	e.tenants.now = clock.Now
	for i := range 20 {
		if status := e.visit(hostSpellings[i%len(hostSpellings)]); status != http.StatusFound && status != http.StatusSeeOther {
			t.Fatalf("request %d: status %d, want a redirect to the provider\nlogs:\n%s", i, status, e.logs)
		}
	}
	s := op.Stats()
	if s.Registration != 1 || s.RegistrationUpdate > 1 {
		t.Errorf("20 requests alternating the Host made %d registrations and %d updates, want 1 and at most 1", s.Registration, s.RegistrationUpdate)
	}
	if c := op.Clients(); len(c) != 1 || len(c[0].RedirectURIs) != 1 || c[0].RedirectURIs[0] != "https://acme.example.com/auth/callback" {
		t.Errorf("registered clients %+v, want one with the first spelling's redirect URI", c)
	}
	if n := strings.Count(e.logs.String(), "tenant configuration changed again"); n != 1 {
		t.Errorf("the put-off change was logged %d times, want once:\n%s", n, e.logs)
	}

	// After the interval, one change takes effect, and then none for another interval.
	clock.Advance(11 * time.Minute)
	for i := range 20 {
		e.visit(hostSpellings[(i+1)%len(hostSpellings)])
	}
	if s2 := op.Stats(); s2.Registration != 1 || s2.RegistrationUpdate != s.RegistrationUpdate+1 {
		t.Errorf("after the interval: %d registrations and %d updates, want 1 and %d", s2.Registration, s2.RegistrationUpdate, s.RegistrationUpdate+1)
	}
	if c := op.Clients(); len(c) != 1 || c[0].RedirectURIs[0] != "https://ACME.example.com/auth/callback" {
		t.Errorf("registered clients %+v, want one with the spelling of the first request after the interval", c)
	}
}

// TestTenantRebuildKeepsBackoff: a rebuilt tenant does not start with a
// fresh failure backoff that lets each rebuild make another provider request.
func TestTenantRebuildKeepsBackoff(t *testing.T) {
	var hits atomic.Int32
	down := newTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		http.Error(w, "down", http.StatusInternalServerError)
	}))
	t.Cleanup(down.Close)
	clock := &fakeClock{}
	e := newHostTenantEnv(t, func() string { return down.URL }, down.Client(), 500*time.Millisecond)
	e.tenants.now = clock.Now
	for i := range 6 {
		if status := e.visit(hostSpellings[i%2]); status != http.StatusServiceUnavailable {
			t.Fatalf("request %d: status %d, want 503", i, status)
		}
		clock.Advance(600 * time.Millisecond) // past the change interval, within the backoff
	}
	// Failures at 0s (backoff 1s) and 1.2s (backoff 2s); none at 0.6, 1.8, 2.4 and 3s.
	if n := hits.Load(); n != 2 {
		t.Errorf("6 requests rebuilding the tenant each time made %d provider requests, want 2 (backoff 1s, then 2s)", n)
	}
	st := e.tenants.Status()
	if len(st) != 1 || st[0].LastError == "" || st[0].RetryAt.IsZero() {
		t.Errorf("status %+v, want the last failure and its retry time", st)
	}
}

// TestTenantRebuildKeepsCheckLimits: the times of the last registration
// check and replacement, which rate-limit those, survive a rebuild.
func TestTenantRebuildKeepsCheckLimits(t *testing.T) {
	op, srv := newOP(t, devop.Options{AutoLogin: true})
	e := newHostTenantEnv(t, op.Issuer, srv.Client(), -1)
	e.visit("acme.example.com")
	old, err := e.tenants.For(Tenant{ID: "acme", Issuer: op.Issuer(), RedirectURL: "https://acme.example.com/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	at := time.Now().Add(-time.Second).Round(0)
	old.lc.mu.Lock()
	old.lc.lastVerify, old.lc.lastRenewal = at, at
	old.lc.mu.Unlock()
	rp, err := e.tenants.For(Tenant{ID: "acme", Issuer: op.Issuer(), RedirectURL: "https://ACME.example.com/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	if rp == old {
		t.Fatal("the tenant was not rebuilt")
	}
	rp.lc.mu.Lock()
	defer rp.lc.mu.Unlock()
	if !rp.lc.lastVerify.Equal(at) || !rp.lc.lastRenewal.Equal(at) {
		t.Errorf("rebuilt tenant: last check %v, last replacement %v, want both %v", rp.lc.lastVerify, rp.lc.lastRenewal, at)
	}
}
