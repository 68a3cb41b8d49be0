// Command oidcrp-proxy puts OpenID Connect sign-in in front of any HTTP
// application. It needs only the provider's issuer and the upstream's URL: it
// registers itself at the provider (Dynamic Client Registration), keeps its
// credentials in the store, and passes the signed-in user to the upstream
// under oauth2-proxy's header names.
//
//	oidcrp-proxy -dev -upstream http://127.0.0.1:3000          # try-out with an embedded development provider
//	oidcrp-proxy -issuer https://login.example.com -upstream http://127.0.0.1:3000 \
//	    -public-url https://tool.example.com -store redis://redis:6379/0
//	oidcrp-proxy -tenant a.example.com=https://login.a.example -tenant b.example.com=https://login.b.example \
//	    -upstream http://127.0.0.1:3000 -public-url https://proxy.example.com   # a registration per host
//
// Every flag has an environment fallback; see -help.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/internal/devop"
	"github.com/oidcrp/oidcrp/redisstore"
	"github.com/redis/go-redis/v9"
)

func main() {
	if err := run(os.Args[1:], os.Stderr); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			os.Exit(0)
		}
		// One clear line: what is wrong and what to do.
		fmt.Fprintln(os.Stderr, "oidcrp-proxy:", err)
		os.Exit(2)
	}
}

// config is the proxy's configuration, from flags and their environment
// fallbacks.
type config struct {
	issuer, upstream, addr, publicURL, store, storeKey string
	metricsAddr                                        string
	initialAccessToken                                 string
	dev, passAccessToken, passHostHeader               bool
	passAuthorization                                  bool
	scopes, publicPaths                                []string
	tenants                                            tenantFlags
	policy                                             policy

	upstreamURL, public *url.URL
}

func env(name, def string) string {
	if v, ok := os.LookupEnv(name); ok && v != "" {
		return v
	}
	return def
}

func envBool(name string, def bool) (bool, error) {
	v := env(name, "")
	if v == "" {
		return def, nil
	}
	b, err := strconv.ParseBool(v)
	if err != nil {
		return false, fmt.Errorf("environment variable %s=%q is not a boolean (true or false)", name, v)
	}
	return b, nil
}

// list splits a comma-separated flag value, dropping empty items.
func list(s string) []string {
	var out []string
	for _, item := range strings.Split(s, ",") {
		if item = strings.TrimSpace(item); item != "" {
			out = append(out, item)
		}
	}
	return out
}

func parseConfig(args []string, stderr io.Writer) (*config, error) {
	var c config
	fs := flag.NewFlagSet("oidcrp-proxy", flag.ContinueOnError)
	fs.SetOutput(io.Discard) // errors are reported in one line by main; -help prints the usage below
	fs.StringVar(&c.issuer, "issuer", env("OIDC_ISSUER", ""), "OpenID Provider issuer URL (env OIDC_ISSUER); required unless -dev")
	fs.StringVar(&c.upstream, "upstream", env("UPSTREAM", ""), "URL of the application to protect, http or https (env UPSTREAM); required")
	fs.StringVar(&c.addr, "addr", env("ADDR", "127.0.0.1:4180"), "listen address (env ADDR)")
	fs.StringVar(&c.publicURL, "public-url", env("PUBLIC_URL", ""), "origin browsers use to reach the proxy; default http://ADDR (env PUBLIC_URL)")
	fs.StringVar(&c.store, "store", env("CREDENTIAL_STORE", "memory"), "credential store: memory, file:PATH or redis://HOST:PORT/DB (env CREDENTIAL_STORE)")
	fs.StringVar(&c.storeKey, "store-key", env("STORE_KEY", ""), "key of the client credentials in the store; default oidcrp:client (env STORE_KEY)")
	fs.StringVar(&c.initialAccessToken, "initial-access-token", env("OIDC_INITIAL_ACCESS_TOKEN", ""), "initial access token for registration (env OIDC_INITIAL_ACCESS_TOKEN)")
	fs.Var(&c.tenants, "tenant", "HOST=ISSUER: requests for HOST sign in at ISSUER with a registration of their own; repeatable; excludes -issuer (env TENANTS, comma-separated)")
	fs.StringVar(&c.metricsAddr, "metrics-addr", env("METRICS_ADDR", ""), "address to serve Prometheus metrics at /metrics; default none (env METRICS_ADDR)")
	scopes := fs.String("scopes", env("OIDC_SCOPES", ""), "comma-separated scopes besides openid; default profile,email (env OIDC_SCOPES)")
	public := fs.String("public-paths", env("PUBLIC_PATHS", ""), "comma-separated paths served without sign-in; a path ending in / is a prefix (env PUBLIC_PATHS)")
	domains := fs.String("allowed-email-domains", env("ALLOWED_EMAIL_DOMAINS", ""), "comma-separated email domains allowed; .example.com allows subdomains (env ALLOWED_EMAIL_DOMAINS)")
	emails := fs.String("allowed-emails", env("ALLOWED_EMAILS", ""), "comma-separated email addresses allowed (env ALLOWED_EMAILS)")
	groups := fs.String("allowed-groups", env("ALLOWED_GROUPS", ""), "comma-separated groups allowed (env ALLOWED_GROUPS)")
	claims := fs.String("allowed-claims", env("ALLOWED_CLAIMS", ""), "comma-separated claim=value pairs allowed (env ALLOWED_CLAIMS)")
	fs.StringVar(&c.policy.groupsClaim, "groups-claim", env("GROUPS_CLAIM", "groups"), "claim holding the user's groups (env GROUPS_CLAIM)")
	dev, err := envBool("DEV", false)
	if err != nil {
		return nil, err
	}
	passAT, err := envBool("PASS_ACCESS_TOKEN", false)
	if err != nil {
		return nil, err
	}
	passHost, err := envBool("PASS_HOST_HEADER", true)
	if err != nil {
		return nil, err
	}
	passAuthz, err := envBool("PASS_AUTHORIZATION_HEADER", false)
	if err != nil {
		return nil, err
	}
	fs.BoolVar(&c.dev, "dev", dev, "start an embedded development provider on loopback, NOT for production (env DEV)")
	fs.BoolVar(&c.passAccessToken, "pass-access-token", passAT, "send the user's access token as X-Forwarded-Access-Token (env PASS_ACCESS_TOKEN)")
	fs.BoolVar(&c.passAuthorization, "pass-authorization-header", passAuthz, "send the user's ID token as Authorization: Bearer, when the session kept it (env PASS_AUTHORIZATION_HEADER)")
	fs.BoolVar(&c.passHostHeader, "pass-host-header", passHost, "send the client's Host header to the upstream (env PASS_HOST_HEADER)")
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			fs.SetOutput(stderr)
			fmt.Fprintln(stderr, "usage: oidcrp-proxy -issuer URL -upstream URL [flags]   (or -dev -upstream URL for a try-out)")
			fs.PrintDefaults()
		}
		return nil, err
	}
	if fs.NArg() > 0 {
		return nil, fmt.Errorf("unexpected argument %q: every setting is a flag", fs.Arg(0))
	}
	c.scopes, c.publicPaths = list(*scopes), list(*public)
	if len(c.tenants) == 0 {
		for _, t := range list(env("TENANTS", "")) {
			if err := c.tenants.Set(t); err != nil {
				return nil, fmt.Errorf("TENANTS: %v", err)
			}
		}
	}
	if err := c.policy.parse(list(*domains), list(*emails), list(*groups), list(*claims)); err != nil {
		return nil, err
	}
	return &c, c.validate()
}

func (c *config) validate() error {
	switch {
	case c.dev && c.issuer != "":
		return errors.New("-dev and -issuer (OIDC_ISSUER) exclude each other: -dev starts its own provider")
	case len(c.tenants) > 0 && (c.dev || c.issuer != ""):
		return errors.New("-tenant (TENANTS) excludes -issuer (OIDC_ISSUER) and -dev: each tenant names its own issuer")
	case len(c.tenants) > 0 && c.storeKey != "":
		return errors.New("-store-key (STORE_KEY) does not apply with -tenant: each tenant's credentials are at oidcrp:client:HOST")
	case !c.dev && c.issuer == "" && len(c.tenants) == 0:
		return errors.New("-issuer (OIDC_ISSUER) is required: the OpenID Provider's issuer URL, or -dev for a try-out")
	case c.upstream == "":
		return errors.New("-upstream (UPSTREAM) is required: the URL of the application to protect, e.g. http://127.0.0.1:3000")
	}
	if c.issuer != "" {
		if u, err := url.Parse(c.issuer); err != nil || (u.Scheme != "https" && u.Scheme != "http") || u.Host == "" {
			return fmt.Errorf("-issuer %q is not an http(s) URL", c.issuer)
		}
	}
	u, err := url.Parse(c.upstream)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" || u.RawQuery != "" || u.Fragment != "" {
		return fmt.Errorf("-upstream %q must be an http(s) URL without query, e.g. http://127.0.0.1:3000", c.upstream)
	}
	c.upstreamURL = u
	host, _, err := net.SplitHostPort(c.addr)
	if err != nil {
		return fmt.Errorf("-addr %q is not HOST:PORT", c.addr)
	}
	if c.metricsAddr != "" {
		if _, _, err := net.SplitHostPort(c.metricsAddr); err != nil {
			return fmt.Errorf("-metrics-addr %q is not HOST:PORT", c.metricsAddr)
		}
	}
	if c.publicURL == "" {
		if ip := net.ParseIP(host); host == "" || (ip != nil && ip.IsUnspecified()) {
			return fmt.Errorf("-public-url (PUBLIC_URL) is required with -addr %q: the origin browsers use, e.g. https://tool.example.com", c.addr)
		}
		c.publicURL = "http://" + c.addr
	}
	p, err := url.Parse(strings.TrimSuffix(c.publicURL, "/"))
	if err != nil || (p.Scheme != "http" && p.Scheme != "https") || p.Host == "" || p.Path != "" || p.RawQuery != "" || p.Fragment != "" {
		return fmt.Errorf("-public-url %q must be an origin such as https://tool.example.com (no path)", c.publicURL)
	}
	c.public, c.publicURL = p, p.String()
	for _, pp := range c.publicPaths {
		if !strings.HasPrefix(pp, "/") {
			return fmt.Errorf("-public-paths entry %q must start with /", pp)
		}
		if strings.HasPrefix(pp, "/oauth2/") || pp == "/" {
			return fmt.Errorf("-public-paths entry %q would expose the proxy's own endpoints or everything", pp)
		}
	}
	seen := map[string]bool{}
	for _, t := range c.tenants {
		if seen[t.host] {
			return fmt.Errorf("-tenant %s is given twice", t.host)
		}
		seen[t.host] = true
	}
	if c.policy.groupsClaim == "" {
		return errors.New("-groups-claim must not be empty")
	}
	_, err = credentialStore(c.store, nil)
	return err
}

func credentialStore(spec string, log *slog.Logger) (oidcrp.CredentialStore, error) {
	switch {
	case spec == "memory":
		return new(oidcrp.MemoryStore), nil
	case strings.HasPrefix(spec, "file:") && len(spec) > len("file:"):
		return oidcrp.NewFileStore(strings.TrimPrefix(spec, "file:")), nil
	case strings.HasPrefix(spec, "redis://") || strings.HasPrefix(spec, "rediss://"):
		opts, err := redis.ParseURL(spec)
		if err != nil {
			return nil, fmt.Errorf("-store %q: %v", spec, err)
		}
		if log == nil { // validation only
			return nil, nil
		}
		return redisstore.New(redis.NewClient(opts), redisstore.Options{Logger: log}), nil
	}
	return nil, fmt.Errorf("-store %q (CREDENTIAL_STORE) is not memory, file:PATH or redis://HOST:PORT/DB", spec)
}

func run(args []string, stderr io.Writer) error {
	c, err := parseConfig(args, stderr)
	if err != nil {
		return err
	}
	log := slog.New(slog.NewJSONHandler(stderr, nil))
	store, err := credentialStore(c.store, log)
	if err != nil {
		return err
	}
	if c.dev {
		op, stop, err := devop.Start("127.0.0.1:0", "", devop.Options{InitialAccessToken: c.initialAccessToken, AuthMethods: devop.AllAuthMethods})
		if err != nil {
			return fmt.Errorf("start the development provider: %v", err)
		}
		defer stop()
		c.issuer = op.Issuer()
		log.Warn("started an embedded DEVELOPMENT provider (not for production)", "issuer", c.issuer)
	}
	var m *metrics
	var trace *oidcrp.Trace
	if c.metricsAddr != "" {
		if m, err = newMetrics(); err != nil {
			return err
		}
		trace = m.trace()
	}
	base := oidcrp.Config{
		LogoutPath:         signOutPath,
		Scopes:             c.scopes,
		InitialAccessToken: oidcrp.Secret(c.initialAccessToken),
		Store:              store,
		KeepTokens:         c.passAccessToken,
		Logger:             log,
		Trace:              trace,
	}
	var rp *oidcrp.RP
	var ts *tenantSites
	var rps []*oidcrp.RP              // to warm up
	var status func() []oidcrp.Status // for the metrics
	if len(c.tenants) > 0 {
		if ts, err = newTenantSites(c, base, log); err != nil {
			return err
		}
		if rps, err = ts.all(); err != nil {
			return err
		}
		status = ts.tenants.Status
	} else {
		cfg := base
		cfg.Issuer, cfg.RedirectURL, cfg.StoreKey = c.issuer, c.publicURL+callbackPath, c.storeKey
		if rp, err = oidcrp.New(cfg); err != nil {
			return err
		}
		rps = []*oidcrp.RP{rp}
		status = func() []oidcrp.Status { return []oidcrp.Status{rp.Status()} }
	}
	if m != nil {
		msrv, err := m.serve(c.metricsAddr, status, log)
		if err != nil {
			return fmt.Errorf("-metrics-addr %s: %v", c.metricsAddr, err)
		}
		defer msrv.Close()
	}
	ln, err := net.Listen("tcp", c.addr)
	if err != nil {
		return fmt.Errorf("-addr %s: %v", c.addr, err)
	}
	srv := &http.Server{
		Handler:           newHandler(c, rp, ts, log),
		ReadHeaderTimeout: 10 * time.Second,
		ErrorLog:          slog.NewLogLogger(log.Handler(), slog.LevelWarn),
	}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	go func() {
		<-ctx.Done()
		shutdown, done := context.WithTimeout(context.Background(), 10*time.Second)
		defer done()
		_ = srv.Shutdown(shutdown)
	}()
	for _, rp := range rps {
		go func() { // warm up: discover and register before the first visitor
			wctx, done := context.WithTimeout(ctx, 30*time.Second)
			defer done()
			if err := rp.Ready(wctx); err != nil {
				log.Warn("provider not ready yet; retrying on demand", "err", err)
			}
		}()
	}
	if ts != nil {
		log.Info("oidcrp-proxy listening", "addr", ln.Addr().String(), "public_url", c.publicURL, "upstream", c.upstreamURL.String(), "tenants", c.tenants.String())
	} else {
		log.Info("oidcrp-proxy listening", "addr", ln.Addr().String(), "public_url", c.publicURL, "upstream", c.upstreamURL.String(), "issuer", c.issuer)
	}
	if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}
