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
	"net/netip"
	"net/url"
	"strings"
	"sync/atomic"
	"testing"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// tenantEnv is one application serving path-routed tenants /t/{id}/…, each
// on its own provider.
type tenantEnv struct {
	t       *testing.T
	ops     map[string]*devop.Provider
	tenants *Tenants
	app     *httptest.Server
	browser *http.Client
	handled atomic.Int32
	store   *MemoryStore
}

func newTenantEnv(t *testing.T, ids ...string) *tenantEnv {
	t.Helper()
	e := &tenantEnv{t: t, ops: map[string]*devop.Provider{}, store: new(MemoryStore)}
	var client *http.Client
	for _, id := range ids {
		op, srv := newOP(t, devop.Options{AutoLogin: true})
		e.ops[id] = op
		client = srv.Client()
	}
	e.app = newTLSServer(nil)
	t.Cleanup(e.app.Close)
	var err error
	e.tenants, err = NewTenants(TenantsConfig{
		Resolve: func(r *http.Request) (Tenant, error) {
			id, _, _ := strings.Cut(strings.TrimPrefix(r.URL.Path, "/t/"), "/")
			op, ok := e.ops[id]
			if !ok {
				return Tenant{}, fmt.Errorf("unknown tenant %q", id)
			}
			return Tenant{ID: id, Issuer: op.Issuer(), RedirectURL: e.app.URL + "/t/" + id + "/callback", LogoutPath: "/t/" + id + "/logout"}, nil
		},
		AllowIssuer: func(string) bool { return true },
		Base:        Config{Store: e.store, HTTPClient: client, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
	})
	if err != nil {
		t.Fatal(err)
	}
	e.app.Config.Handler = e.tenants.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		e.handled.Add(1)
		u, _ := UserFromContext(r.Context())
		fmt.Fprintf(w, "%s@%s", u.Subject, u.Issuer)
	}))
	jar, _ := cookiejar.New(nil)
	e.browser = &http.Client{Jar: jar, Transport: client.Transport,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	return e
}

func (e *tenantEnv) get(u string) *http.Response {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", html)
	resp, err := e.browser.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp
}

// login follows the flow from path and returns the final body and status.
func (e *tenantEnv) login(path string) (int, string) {
	e.t.Helper()
	resp := e.get(e.app.URL + path)
	for i := 0; i < 10 && resp.StatusCode >= 300 && resp.StatusCode < 400; i++ {
		resp.Body.Close()
		next, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
		resp = e.get(next.String())
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

func TestTenantsLogInIndependently(t *testing.T) {
	t.Parallel()
	e := newTenantEnv(t, "a", "b")
	for _, id := range []string{"a", "b"} {
		status, body := e.login("/t/" + id + "/home")
		if status != 200 || body != "demo-user@"+e.ops[id].Issuer() {
			t.Fatalf("tenant %s: %d %s", id, status, body)
		}
		if s := e.ops[id].Stats(); s.Registration != 1 {
			t.Errorf("tenant %s registrations: %d", id, s.Registration)
		}
	}
	if n := len(e.tenants.Status()); n != 2 {
		t.Errorf("status lists %d tenants", n)
	}
}

func TestTenantCookieRejectedAtOtherTenant(t *testing.T) {
	t.Parallel()
	e := newTenantEnv(t, "a", "b")
	e.login("/t/a/home")
	app, _ := url.Parse(e.app.URL)
	var sessA *http.Cookie
	for _, c := range e.browser.Jar.Cookies(app) {
		if name := strings.TrimPrefix(c.Name, hostPrefix); strings.HasPrefix(name, "oidcrp_") && !strings.HasPrefix(name, flowCookiePrefix) {
			sessA = c
		}
	}
	if sessA == nil {
		t.Fatal("no session cookie for tenant a")
	}
	rpB, _ := e.tenants.For(Tenant{ID: "b", Issuer: e.ops["b"].Issuer(), RedirectURL: e.app.URL + "/t/b/callback", LogoutPath: "/t/b/logout"})
	// Tenant A's sealed session presented under tenant B's cookie name.
	req, _ := http.NewRequest(http.MethodGet, e.app.URL+"/t/b/home", nil)
	req.AddCookie(&http.Cookie{Name: rpB.cfg.SessionName, Value: sessA.Value})
	resp, err := (&http.Client{Transport: e.browser.Transport}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized || e.handled.Load() != 1 {
		t.Fatalf("tenant a's session at tenant b: %d", resp.StatusCode)
	}
}

func TestTenantCallbackCannotCrossTenants(t *testing.T) {
	t.Parallel()
	e := newTenantEnv(t, "a", "b")
	resp := e.get(e.app.URL + "/t/a/home") // login starts at a
	resp.Body.Close()
	resp = e.get(resp.Header.Get("Location"))
	resp.Body.Close()
	cb, _ := url.Parse(resp.Header.Get("Location"))
	if cb.Path != "/t/a/callback" {
		t.Fatalf("provider sent the browser to %s", cb)
	}
	cb.Path = "/t/b/callback" // …and is completed at b's callback
	resp = e.get(cb.String())
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusBadRequest || !strings.Contains(string(body), string(ReasonStateMismatch)) {
		t.Fatalf("cross-tenant callback: %d %s", resp.StatusCode, body)
	}
	if e.ops["a"].Stats().Token+e.ops["b"].Stats().Token != 0 {
		t.Error("a code was exchanged")
	}
}

func TestTenantBrokenProviderIsolated(t *testing.T) {
	t.Parallel()
	e := newTenantEnv(t, "a", "dead")
	dead := httptest.NewServer(http.NotFoundHandler())
	dead.Close()
	e.ops["dead"].SetIssuer(dead.URL) // the provider's issuer now points nowhere
	if status, _ := e.login("/t/dead/home"); status != http.StatusServiceUnavailable {
		t.Errorf("broken tenant: %d, want 503", status)
	}
	if status, body := e.login("/t/a/home"); status != 200 {
		t.Errorf("healthy tenant: %d %s", status, body)
	}
}

func TestTenantsBoundedAndReloadedWithoutReregistering(t *testing.T) {
	t.Parallel()
	// Ten times as many tenants as may stay resident; the first 50 are long
	// evicted when they come back.
	const tenantCount, maxResident = 300, 30
	op, srv := newOP(t, devop.Options{})
	tenants, err := NewTenants(TenantsConfig{
		Resolve:     func(*http.Request) (Tenant, error) { return Tenant{}, errors.New("unused") },
		AllowIssuer: func(string) bool { return true },
		MaxResident: maxResident,
		Base:        Config{HTTPClient: srv.Client(), Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
	})
	if err != nil {
		t.Fatal(err)
	}
	tenant := func(i int) Tenant {
		return Tenant{ID: fmt.Sprintf("t%04d", i), Issuer: op.Issuer(), RedirectURL: fmt.Sprintf("https://t%04d.app.example/cb", i)}
	}
	ctx := context.Background()
	for i := range tenantCount {
		rp, err := tenants.For(tenant(i))
		if err != nil {
			t.Fatal(err)
		}
		if err := rp.Ready(ctx); err != nil {
			t.Fatalf("tenant %d: %v", i, err)
		}
		if n := len(tenants.Status()); n > maxResident {
			t.Fatalf("%d resident tenants, limit %d", n, maxResident)
		}
	}
	if s := op.Stats(); s.Registration != tenantCount {
		t.Fatalf("%d registrations for %d tenants", s.Registration, tenantCount)
	}
	if n := len(tenants.Status()); n != maxResident { // a bound met by keeping none would be no cache
		t.Fatalf("%d resident tenants after %d, want the limit %d", n, tenantCount, maxResident)
	}
	for i := range 50 { // long evicted: they come back from the store
		rp, _ := tenants.For(tenant(i))
		if err := rp.Ready(ctx); err != nil {
			t.Fatal(err)
		}
	}
	if s := op.Stats(); s.Registration != tenantCount {
		t.Errorf("re-created tenants registered again: %d registrations", s.Registration)
	}
}

func TestTenantIssuerPolicyAndPrivateAddresses(t *testing.T) {
	t.Parallel()
	op, stop, err := devop.Start("127.0.0.1:0", "", devop.Options{SigningKey: providerKey(t)})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	newTenants := func(allowPrivate bool) *Tenants {
		ts, err := NewTenants(TenantsConfig{
			Resolve:              func(*http.Request) (Tenant, error) { return Tenant{}, errors.New("unused") },
			AllowIssuer:          func(iss string) bool { return !strings.Contains(iss, "evil") },
			AllowPrivateNetworks: allowPrivate,
			Base:                 Config{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))},
		})
		if err != nil {
			t.Fatal(err)
		}
		return ts
	}
	ctx := context.Background()
	guarded := newTenants(false)
	for _, issuer := range []string{op.Issuer(), "https://169.254.169.254/", "https://10.1.2.3/", "http://[::1]:9/", "http://localhost:9/", "https://[fd00:ec2::254]/"} {
		rp, err := guarded.For(Tenant{ID: "x" + issuer, Issuer: issuer, RedirectURL: "https://app.example/cb"})
		if err != nil {
			t.Fatal(err)
		}
		if err := rp.Ready(ctx); !errors.Is(err, ErrForbiddenAddress) {
			t.Errorf("issuer %s: %v, want ErrForbiddenAddress", issuer, err)
		}
	}
	if s := op.Stats(); s.Discovery != 0 {
		t.Errorf("the guarded client reached the loopback provider: %+v", s)
	}
	if _, err := guarded.For(Tenant{ID: "e", Issuer: "https://evil.example", RedirectURL: "https://app.example/cb"}); !errors.Is(err, ErrIssuerNotAllowed) {
		t.Errorf("issuer policy: %v", err)
	}
	open := newTenants(true)
	rp, _ := open.For(Tenant{ID: "dev", Issuer: op.Issuer(), RedirectURL: "http://127.0.0.1:1/cb"})
	if err := rp.Ready(ctx); err != nil {
		t.Errorf("with AllowPrivateNetworks: %v", err)
	}
}

func TestTenantRemoveDecommissions(t *testing.T) {
	t.Parallel()
	e := newTenantEnv(t, "a")
	e.login("/t/a/home")
	tn := Tenant{ID: "a", Issuer: e.ops["a"].Issuer(), RedirectURL: e.app.URL + "/t/a/callback", LogoutPath: "/t/a/logout"}
	if err := e.tenants.Remove(context.Background(), tn); err != nil {
		t.Fatal(err)
	}
	if s := e.ops["a"].Stats(); s.RegistrationDelete != 1 || len(e.ops["a"].Clients()) != 0 {
		t.Errorf("registration not deleted at the provider: %+v", s)
	}
	if _, err := e.store.Load(context.Background(), "oidcrp:client:a:"+tn.Issuer); !errors.Is(err, ErrNotFound) {
		t.Errorf("credentials still stored: %v", err)
	}
	if len(e.tenants.Status()) != 0 {
		t.Error("removed tenant still resident")
	}
}

func TestPublicAddress(t *testing.T) {
	t.Parallel()
	for addr, want := range map[string]bool{
		"93.184.216.34": true, "2606:4700::1": true, "8.8.8.8": true,
		"127.0.0.1": false, "10.0.0.1": false, "172.16.5.4": false, "192.168.1.1": false, "169.254.169.254": false,
		"100.64.0.1": false, "0.0.0.0": false, "::1": false, "fe80::1": false, "fc00::1": false, "::ffff:127.0.0.1": false,
		"::ffff:10.0.0.1": false, "64:ff9b::a00:1": false, "2002:a00:1::": false, "224.0.0.1": false, "255.255.255.255": false,
		"fd00:ec2::254": false,
	} {
		if got := publicAddress(mustAddr(t, addr)); got != want {
			t.Errorf("publicAddress(%s) = %v, want %v", addr, got, want)
		}
	}
}

func mustAddr(t *testing.T, s string) netip.Addr {
	t.Helper()
	a, err := netip.ParseAddr(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

// TestProviderResponsesCapped: a provider streaming an endless userinfo
// response fails the login instead of exhausting memory.
func TestProviderResponsesCapped(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	up := e.opSrv.Config.Handler
	e.opSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if strings.HasSuffix(r.URL.Path, "/userinfo") {
			w.Header().Set("Content-Type", "application/json")
			w.Write([]byte(`{"sub":"demo-user","x":"`))
			chunk := []byte(strings.Repeat("a", 64<<10))
			for range 64 { // 4 MiB
				if _, err := w.Write(chunk); err != nil {
					return
				}
			}
			return
		}
		up.ServeHTTP(w, r)
	})
	if status, _ := e.attempt("/"); status != http.StatusBadGateway || e.cookie("oidcrp") != nil {
		t.Fatalf("oversized userinfo: %d", status)
	}
	if !strings.Contains(e.logs.String(), "larger than 1 MiB") {
		t.Errorf("cap not reported:\n%s", e.logs)
	}
}
