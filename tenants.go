package oidcrp

import (
	"container/list"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"
)

// Tenant is one customer's identity provider, as a [TenantsConfig.Resolve]
// function finds it for a request.
type Tenant struct {
	// ID identifies the tenant; it keys its credentials in the store and
	// binds its cookies. Required.
	ID string
	// Issuer is the tenant's provider. It must pass TenantsConfig.AllowIssuer.
	Issuer string
	// RedirectURL is the tenant's callback URL, on the tenant's host or
	// under its path. Required.
	RedirectURL string
	// LogoutPath overrides the base configuration's, e.g. "/t/acme/logout"
	// for path-routed tenants.
	LogoutPath string
	// Metadata, when set, replaces the base configuration's client metadata.
	Metadata *ClientMetadata
	// InitialAccessToken, when set, replaces the base configuration's.
	InitialAccessToken Secret
}

// TenantsConfig configures [Tenants].
type TenantsConfig struct {
	// Resolve finds the tenant of a request, typically from its host or the
	// first path segment. An error answers 404 Not Found. Required.
	Resolve func(r *http.Request) (Tenant, error)

	// AllowIssuer approves a tenant's issuer before anything is fetched
	// from it, e.g. by matching the host against the identity providers
	// your customers may use. Required: issuers in tenant configuration may
	// be influenced by attackers.
	AllowIssuer func(issuer string) bool

	// Base is the configuration every tenant starts from: Store, session
	// keys, scopes, logging and so on. Its Issuer, RedirectURL, StoreKey and
	// ClientID are ignored. Without Base.HTTPClient, provider requests go
	// through PublicHTTPClient, which refuses internal addresses.
	Base Config

	// MaxResident bounds the tenants kept in memory; the least recently used
	// is dropped beyond it and comes back from the store when needed.
	// Default: 1000.
	MaxResident int

	// AllowPrivateNetworks lets provider requests reach loopback, private
	// and link-local addresses when Base.HTTPClient is not set. For
	// development only.
	AllowPrivateNetworks bool

	// ChangeInterval is the least time between two changes of a resident
	// tenant's configuration (Issuer, RedirectURL, LogoutPath, Metadata,
	// InitialAccessToken) taking effect. A change rebuilds the tenant's
	// relying party and usually updates or replaces its registration at
	// the provider, which breaks that tenant's logins in progress; within
	// the interval, requests resolving to another configuration are served
	// by the resident one and the change is logged once, and the first
	// request after it applies the change. This bounds what a Resolve that
	// depends on the request (the Host header's spelling, say) costs at the
	// provider. Default: 10 minutes; negative: every change at once.
	ChangeInterval time.Duration
}

// Tenants is a relying party per tenant: each tenant gets its own
// discovery, registration and credentials, created lazily on its first
// request and kept in a bounded set. Sessions and logins of one tenant are
// never accepted for another.
type Tenants struct {
	cfg         *TenantsConfig // a pointer, so that printing Tenants shows no secret
	keys        *keyring
	revocations *revocations
	http        *http.Client
	log         *slog.Logger

	now func() time.Time

	mu       sync.Mutex
	resident map[string]*list.Element // tenant ID → element of lru holding *tenantRP
	lru      *list.List               // front: most recently used
}

type tenantRP struct {
	tenant   Tenant
	rp       *RP
	since    time.Time // when this configuration took effect
	deferred bool      // a change was put off and logged since then
}

// NewTenants validates cfg and returns Tenants. It does no I/O.
func NewTenants(cfg TenantsConfig) (*Tenants, error) {
	if cfg.Resolve == nil {
		return nil, errors.New("oidcrp: TenantsConfig.Resolve is required")
	}
	if cfg.AllowIssuer == nil {
		return nil, errors.New("oidcrp: TenantsConfig.AllowIssuer is required")
	}
	if cfg.MaxResident <= 0 {
		cfg.MaxResident = 1000
	}
	if cfg.ChangeInterval == 0 {
		cfg.ChangeInterval = 10 * time.Minute
	}
	if cfg.Base.Store == nil {
		cfg.Base.Store = new(MemoryStore)
	}
	t := &Tenants{cfg: &cfg, resident: map[string]*list.Element{}, lru: list.New(), http: cfg.Base.HTTPClient, log: cfg.Base.Logger, now: time.Now}
	if t.log == nil {
		t.log = slog.Default()
	}
	if t.http == nil && !cfg.AllowPrivateNetworks {
		t.http = PublicHTTPClient()
	}
	// Validate the base configuration once, with a placeholder tenant.
	probe, err := t.newRP(Tenant{ID: "-", Issuer: "https://issuer.invalid", RedirectURL: "https://app.invalid/callback"})
	if err != nil {
		return nil, err
	}
	t.keys, t.revocations = probe.keys, probe.revocations
	return t, nil
}

func (t *Tenants) newRP(tn Tenant) (*RP, error) {
	cfg := t.cfg.Base
	cfg.Issuer, cfg.RedirectURL, cfg.ClientID, cfg.ClientSecret = tn.Issuer, tn.RedirectURL, "", ""
	// The key names the tenant, not its issuer: a tenant that moves to
	// another provider finds its old registration and deletes it there.
	cfg.StoreKey = "oidcrp:client:" + tn.ID
	cfg.HTTPClient = t.http
	if tn.LogoutPath != "" {
		cfg.LogoutPath = tn.LogoutPath
	}
	if tn.Metadata != nil {
		cfg.Metadata = *tn.Metadata
	}
	if tn.InitialAccessToken != "" {
		cfg.InitialAccessToken = tn.InitialAccessToken
	}
	name := cfg.SessionName
	if name == "" {
		name = "oidcrp"
	}
	sum := sha256.Sum256([]byte(tn.ID))
	cfg.SessionName = name + "_" + hex.EncodeToString(sum[:6])
	cfg.Logger = t.log.With("tenant", tn.ID)
	rp, err := newRP(cfg, tn.ID, "oidcrp:client:"+tn.ID+":"+tn.Issuer)
	if err != nil {
		return nil, fmt.Errorf("oidcrp: tenant %q: %s", tn.ID, strings.TrimPrefix(err.Error(), "oidcrp: "))
	}
	rp.now = t.now
	if t.keys != nil {
		rp.keys, rp.revocations = t.keys, t.revocations
	}
	return rp, nil
}

// ErrIssuerNotAllowed is returned for a tenant whose issuer AllowIssuer refuses.
var ErrIssuerNotAllowed = errors.New("oidcrp: tenant issuer not allowed")

// For returns the relying party of tenant tn, creating it if it is not
// resident. A resident tenant whose configuration differs from tn's is
// rebuilt, at most once per [TenantsConfig.ChangeInterval]; until then its
// resident relying party is returned. It does no I/O.
func (t *Tenants) For(tn Tenant) (*RP, error) {
	if err := t.check(tn); err != nil {
		return nil, err
	}
	t.mu.Lock()
	defer t.mu.Unlock()
	if el, ok := t.resident[tn.ID]; ok {
		e := el.Value.(*tenantRP)
		t.lru.MoveToFront(el)
		if sameTenant(e.tenant, tn) {
			return e.rp, nil
		}
		now := t.now()
		if until := e.since.Add(t.cfg.ChangeInterval); now.Before(until) {
			if !e.deferred {
				e.deferred = true
				t.log.Warn("oidcrp: tenant configuration changed again soon after its last change; keeping the current one for now",
					"tenant", tn.ID, "until", until, "issuer", truncate(tn.Issuer, 200), "redirect_url", truncate(tn.RedirectURL, 200),
					"current_redirect_url", e.tenant.RedirectURL)
			}
			return e.rp, nil
		}
		rp, err := t.newRP(tn)
		if err != nil {
			return nil, err
		}
		rp.lc.inherit(e.rp.lc)
		e.rp.lc.close()
		t.log.Info("oidcrp: tenant configuration changed", "tenant", tn.ID, "issuer", truncate(tn.Issuer, 200), "redirect_url", truncate(tn.RedirectURL, 200))
		e.tenant, e.rp, e.since, e.deferred = tn, rp, now, false
		return rp, nil
	}
	rp, err := t.newRP(tn)
	if err != nil {
		return nil, err
	}
	t.resident[tn.ID] = t.lru.PushFront(&tenantRP{tenant: tn, rp: rp, since: t.now()})
	for t.lru.Len() > t.cfg.MaxResident {
		old := t.lru.Back()
		t.lru.Remove(old)
		delete(t.resident, old.Value.(*tenantRP).tenant.ID)
		old.Value.(*tenantRP).rp.lc.close()
	}
	return rp, nil
}

// check refuses a tenant without ID or with an issuer AllowIssuer refuses.
func (t *Tenants) check(tn Tenant) error {
	if tn.ID == "" {
		return errors.New("oidcrp: tenant without ID")
	}
	if !t.cfg.AllowIssuer(tn.Issuer) {
		return fmt.Errorf("%w: tenant %q, issuer %q", ErrIssuerNotAllowed, tn.ID, truncate(tn.Issuer, 200))
	}
	return nil
}

func sameTenant(a, b Tenant) bool {
	if a.Issuer != b.Issuer || a.RedirectURL != b.RedirectURL || a.LogoutPath != b.LogoutPath || a.InitialAccessToken != b.InitialAccessToken {
		return false
	}
	if a.Metadata == nil || b.Metadata == nil {
		return a.Metadata == b.Metadata
	}
	return a.Metadata == b.Metadata || fingerprint("", *a.Metadata) == fingerprint("", *b.Metadata)
}

// Status reports the registration state of every resident tenant.
func (t *Tenants) Status() []Status {
	t.mu.Lock()
	rps := make([]*RP, 0, t.lru.Len())
	for el := t.lru.Front(); el != nil; el = el.Next() {
		rps = append(rps, el.Value.(*tenantRP).rp)
	}
	t.mu.Unlock()
	out := make([]Status, 0, len(rps))
	for _, rp := range rps {
		out = append(out, rp.Status())
	}
	slices.SortFunc(out, func(a, b Status) int {
		if a.Tenant < b.Tenant {
			return -1
		}
		if a.Tenant > b.Tenant {
			return 1
		}
		return 0
	})
	return out
}

// Remove decommissions tenant tn: its registration is deleted at the
// provider (RFC 7592) and its credentials in the store, and it leaves memory.
func (t *Tenants) Remove(ctx context.Context, tn Tenant) error {
	if err := t.check(tn); err != nil {
		return err
	}
	t.mu.Lock()
	var rp *RP
	if el, ok := t.resident[tn.ID]; ok {
		e := el.Value.(*tenantRP)
		if sameTenant(e.tenant, tn) {
			rp = e.rp
		}
		e.rp.lc.close()
		t.lru.Remove(el)
		delete(t.resident, tn.ID)
	}
	t.mu.Unlock()
	if rp == nil {
		var err error
		if rp, err = t.newRP(tn); err != nil {
			return err
		}
	}
	rp.lc.close()
	return rp.Decommission(ctx)
}

// resolve finds the request's tenant RP or answers the request itself.
func (t *Tenants) resolve(w http.ResponseWriter, r *http.Request) *RP {
	tn, err := t.cfg.Resolve(r)
	if err == nil {
		var rp *RP
		if rp, err = t.For(tn); err == nil {
			return rp
		}
	}
	status := http.StatusNotFound
	if errors.Is(err, ErrIssuerNotAllowed) {
		status = http.StatusForbidden
	}
	t.log.Warn("oidcrp: no tenant for request", "host", r.Host, "path", truncate(r.URL.Path, 200), "err", err)
	http.Error(w, http.StatusText(status), status)
	return nil
}

// Require is [RP.Require] for the request's tenant.
func (t *Tenants) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rp := t.resolve(w, r); rp != nil {
			rp.require(w, r, next)
		}
	})
}

// Optional is [RP.Optional] for the request's tenant.
func (t *Tenants) Optional(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if rp := t.resolve(w, r); rp != nil {
			rp.optional(w, r, next)
		}
	})
}

// ServeHTTP is [RP.ServeHTTP] (callback and logout) for the request's tenant.
func (t *Tenants) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if rp := t.resolve(w, r); rp != nil {
		rp.ServeHTTP(w, r)
	}
}

// Format prints the number of resident tenants, never the base
// configuration's secrets, whatever the verb.
func (t *Tenants) Format(f fmt.State, verb rune) {
	t.mu.Lock()
	n := t.lru.Len()
	t.mu.Unlock()
	fmt.Fprintf(f, "oidcrp.Tenants{Resident: %d}", n)
}
