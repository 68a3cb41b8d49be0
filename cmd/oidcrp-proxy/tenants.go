package main

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"

	"github.com/oidcrp/oidcrp"
)

// tenantSpec is one -tenant HOST=ISSUER: the requests for HOST sign in at
// ISSUER, with a registration of their own.
type tenantSpec struct {
	host, issuer string
}

// tenantFlags collects the repeatable -tenant flag.
type tenantFlags []tenantSpec

func (f *tenantFlags) String() string {
	if f == nil {
		return ""
	}
	var s []string
	for _, t := range *f {
		s = append(s, t.host+"="+t.issuer)
	}
	return strings.Join(s, ",")
}

func (f *tenantFlags) Set(v string) error {
	t, err := parseTenant(v)
	if err != nil {
		return err
	}
	*f = append(*f, t)
	return nil
}

// parseTenant parses HOST=ISSUER. HOST is a host name (or IP address)
// without port; it is matched case-insensitively, a trailing dot ignored.
func parseTenant(v string) (tenantSpec, error) {
	host, issuer, ok := strings.Cut(strings.TrimSpace(v), "=")
	host = normalHost(host)
	if !ok || host == "" || strings.ContainsAny(host, ":/[]@ ") {
		return tenantSpec{}, fmt.Errorf("tenant %q is not HOST=ISSUER with a host name without port, e.g. a.example.com=https://login.a.example.com", v)
	}
	if u, err := url.Parse(issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
		return tenantSpec{}, fmt.Errorf("tenant %q: issuer %q is not an http(s) URL", v, issuer)
	}
	return tenantSpec{host: host, issuer: issuer}, nil
}

// normalHost is a host as tenants are keyed: lower case, without a
// trailing dot.
func normalHost(h string) string {
	return strings.TrimSuffix(strings.ToLower(strings.TrimSpace(h)), ".")
}

// requestHost is the host of a request's Host header, without port.
func requestHost(hostport string) string {
	h := hostport
	if host, _, err := net.SplitHostPort(hostport); err == nil {
		h = host
	}
	return normalHost(strings.TrimSuffix(strings.TrimPrefix(h, "["), "]"))
}

// tenantOrigin is the origin of a tenant: the configured host with the
// public URL's scheme and port.
func tenantOrigin(public *url.URL, host string) *url.URL {
	o := &url.URL{Scheme: public.Scheme, Host: host}
	if strings.Contains(host, ":") { // an IPv6 address
		o.Host = "[" + host + "]"
	}
	if port := public.Port(); port != "" {
		o.Host = net.JoinHostPort(host, port)
	}
	return o
}

var errUnknownHost = errors.New("no tenant for this host")

// tenantSites serves each configured host with its own relying party, built
// by oidcrp.Tenants: its own registration at its own issuer, its own
// sessions. Only configured hosts have a tenant; any other Host is 404.
type tenantSites struct {
	byHost  map[string]oidcrp.Tenant
	origins map[string]*url.URL // tenant ID → origin
	tenants *oidcrp.Tenants
	build   func(rp *oidcrp.RP, origin *url.URL) *site // set by newHandler
	log     *slog.Logger

	mu    sync.Mutex
	sites map[string]tenantSite // tenant ID → its endpoints for its current RP
}

type tenantSite struct {
	rp   *oidcrp.RP
	site *site
}

func newTenantSites(c *config, base oidcrp.Config, log *slog.Logger) (*tenantSites, error) {
	ts := &tenantSites{byHost: map[string]oidcrp.Tenant{}, origins: map[string]*url.URL{}, log: log, sites: map[string]tenantSite{}}
	issuers := map[string]bool{}
	for _, spec := range c.tenants {
		origin := tenantOrigin(c.public, spec.host)
		ts.byHost[spec.host] = oidcrp.Tenant{ID: spec.host, Issuer: spec.issuer, RedirectURL: origin.String() + callbackPath}
		ts.origins[spec.host] = origin
		issuers[spec.issuer] = true
	}
	var err error
	ts.tenants, err = oidcrp.NewTenants(oidcrp.TenantsConfig{
		Resolve:     ts.resolve,
		AllowIssuer: func(issuer string) bool { return issuers[issuer] },
		Base:        base,
		MaxResident: len(ts.byHost), // every tenant stays resident
		// The issuers are the operator's, as with -issuer: providers on
		// internal addresses are as welcome as with a single one.
		AllowPrivateNetworks: true,
	})
	return ts, err
}

// resolve finds the tenant of the request's Host, port and case aside;
// never one the configuration does not name.
func (ts *tenantSites) resolve(r *http.Request) (oidcrp.Tenant, error) {
	if tn, ok := ts.byHost[requestHost(r.Host)]; ok {
		return tn, nil
	}
	return oidcrp.Tenant{}, errUnknownHost
}

// all returns the relying party of every tenant, sorted by host.
func (ts *tenantSites) all() ([]*oidcrp.RP, error) {
	var rps []*oidcrp.RP
	for _, spec := range sortedTenants(ts.byHost) {
		rp, err := ts.tenants.For(spec)
		if err != nil {
			return nil, err
		}
		rps = append(rps, rp)
	}
	return rps, nil
}

func sortedTenants(m map[string]oidcrp.Tenant) []oidcrp.Tenant {
	var out []oidcrp.Tenant
	for _, tn := range m {
		out = append(out, tn)
	}
	slices.SortFunc(out, func(a, b oidcrp.Tenant) int { return strings.Compare(a.ID, b.ID) })
	return out
}

// site returns the endpoints of the request's tenant, or nil for a host
// that is not a tenant's.
func (ts *tenantSites) site(r *http.Request) *site {
	tn, err := ts.resolve(r)
	if err != nil {
		return nil
	}
	rp, err := ts.tenants.For(tn)
	if err != nil {
		ts.log.Warn("tenant unavailable", "tenant", tn.ID, "err", err)
		return nil
	}
	ts.mu.Lock()
	defer ts.mu.Unlock()
	if s, ok := ts.sites[tn.ID]; ok && s.rp == rp {
		return s.site
	}
	s := ts.build(rp, ts.origins[tn.ID])
	ts.sites[tn.ID] = tenantSite{rp: rp, site: s}
	return s
}
