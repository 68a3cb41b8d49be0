// Package oidcrp turns a net/http application into an OpenID Connect relying
// party that sets itself up: on the first request that needs it, it discovers
// the provider, registers itself (OpenID Connect Dynamic Client Registration
// 1.0, RFC 7591), keeps the issued credentials in a [CredentialStore] so
// restarts and replicas reuse one registration, and runs the authorization
// code flow with PKCE, state, nonce and RFC 9207 issuer checks.
//
//	rp, err := oidcrp.New(oidcrp.Config{
//		Issuer:      "https://login.example.com",
//		RedirectURL: "https://app.example.com/auth/callback",
//		Store:       oidcrp.NewFileStore("/var/lib/app/oidc.json"),
//	})
//	if err != nil {
//		log.Fatal(err)
//	}
//	mux := http.NewServeMux()
//	mux.Handle("/", rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
//		u, _ := oidcrp.UserFromContext(r.Context())
//		fmt.Fprintln(w, "hello", u.Subject)
//	})))
//	log.Fatal(http.ListenAndServe(":8080", mux))
//
// [RP.Require] and [RP.Optional] answer the callback path (the path of
// Config.RedirectURL) and Config.LogoutPath themselves; [RP] is also an
// http.Handler for those two paths, for applications that protect only part
// of their routes.
package oidcrp

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"net/netip"
	"net/url"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/gorilla/sessions"
)

// Config configures an [RP]. Only Issuer and RedirectURL are required; every
// other field has a safe default, documented with it.
type Config struct {
	// Issuer is the provider's issuer identifier, e.g. "https://login.example.com".
	// Discovery must return exactly this string as its "issuer".
	Issuer string

	// RedirectURL is the absolute URL of this application's callback, e.g.
	// "https://app.example.com/auth/callback". It is registered as the only
	// redirect URI, and its path is answered by the middleware. Cookies are
	// marked Secure when it is https.
	RedirectURL string

	// Scopes requested besides "openid", which is always sent.
	// Default: "profile", "email".
	Scopes []string

	// Metadata is the client metadata to register, on top of the defaults:
	// redirect_uris [RedirectURL], post_logout_redirect_uris
	// [PostLogoutRedirectURL], response_types ["code"], grant_types
	// ["authorization_code", "refresh_token"] (the latter only where the
	// provider supports it), scope, client_name "oidcrp", application_type
	// "web", and a token_endpoint_auth_method picked from what the provider
	// supports (client_secret_basic, then client_secret_post, then none).
	// Set fields win over these defaults.
	Metadata ClientMetadata

	// InitialAccessToken is sent as a Bearer token on registration
	// (RFC 7591 §3) when the provider requires one.
	InitialAccessToken string

	// ClientID and ClientSecret, when ClientID is set, name a client
	// registered by hand: no registration happens. Its authentication method
	// is Metadata.TokenEndpointAuthMethod (default client_secret_basic).
	ClientID     string
	ClientSecret string

	// Store keeps the registered credentials and the generated session keys.
	// Default: a MemoryStore, which registers anew on every start; use a
	// FileStore or a shared store in production.
	Store CredentialStore

	// StoreKey is the key of the credentials in Store.
	// Default: "oidcrp:client:" + Issuer.
	StoreKey string

	// SessionKeys seal session and login cookies (AES-256-GCM). Each key is
	// at least 32 bytes; the first seals, all open, so keys can be rotated.
	// Default: a key generated once and kept in Store under
	// "oidcrp:session-keys", shared by every process using that store.
	SessionKeys [][]byte

	// SessionStore, when set, keeps sessions server-side in any gorilla
	// sessions.Store (the cookie then carries only its identifier). Default:
	// the session itself travels in a sealed cookie.
	SessionStore sessions.Store

	// SessionName is the session cookie's name. Default: "oidcrp".
	SessionName string

	// SessionLifetime, when positive, ends sessions that long after login.
	// Default: the session ends when the ID token expires.
	SessionLifetime time.Duration

	// ClaimFilter, when set, may delete or rewrite claims (ID token merged
	// with userinfo) before they are kept in the session. iss and sub are
	// always kept. Use it to keep cookies small.
	ClaimFilter func(claims map[string]any)

	// KeepTokens keeps the access token and the refresh token in the
	// session, for handlers that call APIs as the user (User.AccessToken).
	// When a refresh token was issued, the middleware refreshes the tokens
	// as they expire, and the session lasts as long as the provider honours
	// the refresh token (within SessionLifetime, when set), rather than
	// ending with the ID token. Default: tokens are not kept.
	KeepTokens bool

	// SkipUserInfo turns off the userinfo request made after each login.
	SkipUserInfo bool

	// AllowCaching, when true, leaves the caching headers of responses to
	// signed-in users to the application. Default: [RP.Require] and
	// [Tenants.Require] set "Cache-Control: no-store" and add
	// "Vary: Cookie" before calling the protected handler (which may
	// override them), so that after sign-out neither the browser's Back
	// button nor a shared cache shows the user's pages.
	AllowCaching bool

	// LogoutPath is the path that ends the session. Default: "/logout".
	LogoutPath string

	// PostLogoutRedirectURL is registered as the post-logout redirect URI.
	// Default: the origin of RedirectURL + LogoutPath.
	PostLogoutRedirectURL string

	// RenewBefore is how long before client_secret_expires_at the client
	// obtains a new secret (RFC 7592 read, else a new registration).
	// Default: 5 minutes.
	RenewBefore time.Duration

	// HTTPClient makes every request to the provider. Default: a client
	// with a 30 second timeout.
	HTTPClient *http.Client

	// Logger receives the library's log records. Default: slog.Default().
	// Secrets, codes and tokens are never logged.
	Logger *slog.Logger

	// Trace, when set, receives start, stop and exception events of every
	// provider interaction and login. Default: none.
	Trace *Trace

	// ErrorHandler, when set, writes error responses instead of the plain
	// default pages. err is an *AuthError or wraps ErrUnavailable; status is
	// the HTTP status the default page would use.
	ErrorHandler func(w http.ResponseWriter, r *http.Request, status int, err error)
}

// Sentinel errors; match them with errors.Is.
var (
	// ErrUnavailable wraps every failure to discover the provider, load or
	// obtain credentials: the request cannot be served now, a later one retries.
	ErrUnavailable = errors.New("oidcrp: provider unavailable")
	// ErrIssuerMismatch means the discovery document names another issuer.
	ErrIssuerMismatch = errors.New("oidcrp: discovered issuer does not match the configured issuer")
	// ErrNoRegistration means the provider has no registration_endpoint and no ClientID is configured.
	ErrNoRegistration = errors.New("oidcrp: provider has no registration_endpoint and no ClientID is configured")
)

// RP is an OpenID Connect relying party. It is safe for concurrent use.
type RP struct {
	cfg          Config
	log          *slog.Logger
	httpClient   *http.Client
	redirectPath string
	secure       bool
	now          func() time.Time
	tenant       string      // set by Tenants
	jwks         *jwksTracer // set when tracing

	cur   atomic.Pointer[conn] // the ready provider connection
	setup flight               // shares one setup attempt between requests

	keys *keyring

	sessions   *sessionCache
	refreshing refreshes

	nextCheck   atomic.Int64 // unix nanoseconds of the next periodic registration check; 0 before setup
	verifyMu    sync.Mutex
	lastVerify  time.Time // last check that the registration still exists
	lastRenewal time.Time // last registration replaced because the provider rejected it
}

// New validates cfg and returns an RP. It does no network or store I/O:
// discovery and registration happen on the first request that needs them, or
// in [RP.Ready].
func New(cfg Config) (*RP, error) {
	if err := validIssuer(cfg.Issuer); err != nil {
		return nil, err
	}
	ru, err := url.Parse(cfg.RedirectURL)
	if err != nil || !ru.IsAbs() || ru.Host == "" || ru.Fragment != "" || (ru.Scheme != "https" && ru.Scheme != "http") {
		return nil, fmt.Errorf("oidcrp: RedirectURL %q must be an absolute http(s) URL without fragment", cfg.RedirectURL)
	}
	cfg.Scopes = slices.Clone(cfg.Scopes)
	if cfg.Scopes == nil {
		cfg.Scopes = []string{"profile", "email"}
	}
	if !slices.Contains(cfg.Scopes, "openid") {
		cfg.Scopes = append([]string{"openid"}, cfg.Scopes...)
	}
	if cfg.Store == nil {
		cfg.Store = NewMemoryStore()
	}
	if cfg.StoreKey == "" {
		cfg.StoreKey = "oidcrp:client:" + cfg.Issuer
	}
	for i, k := range cfg.SessionKeys {
		if len(k) < 32 {
			return nil, fmt.Errorf("oidcrp: SessionKeys[%d] is %d bytes; at least 32 are required", i, len(k))
		}
	}
	if cfg.SessionName == "" {
		cfg.SessionName = "oidcrp"
	}
	if cfg.LogoutPath == "" {
		cfg.LogoutPath = "/logout"
	}
	if !strings.HasPrefix(cfg.LogoutPath, "/") || cfg.LogoutPath == ru.Path {
		return nil, fmt.Errorf("oidcrp: LogoutPath %q must be a path distinct from the callback path", cfg.LogoutPath)
	}
	if cfg.PostLogoutRedirectURL == "" {
		cfg.PostLogoutRedirectURL = ru.Scheme + "://" + ru.Host + cfg.LogoutPath
	} else if u, err := url.Parse(cfg.PostLogoutRedirectURL); err != nil || !u.IsAbs() {
		return nil, fmt.Errorf("oidcrp: PostLogoutRedirectURL %q must be an absolute URL", cfg.PostLogoutRedirectURL)
	}
	if cfg.RenewBefore <= 0 {
		cfg.RenewBefore = 5 * time.Minute
	}
	if cfg.HTTPClient == nil {
		cfg.HTTPClient = &http.Client{Timeout: 30 * time.Second}
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	switch cfg.Metadata.TokenEndpointAuthMethod {
	case "", "client_secret_basic", "client_secret_post", "none":
	default:
		return nil, fmt.Errorf("oidcrp: token_endpoint_auth_method %q is not supported (client_secret_basic, client_secret_post, none)", cfg.Metadata.TokenEndpointAuthMethod)
	}
	rp := &RP{
		cfg:          cfg,
		log:          cfg.Logger.With("issuer", cfg.Issuer),
		httpClient:   limitResponses(cfg.HTTPClient),
		redirectPath: ru.Path,
		secure:       ru.Scheme == "https",
		now:          time.Now,
		sessions:     newSessionCache(),
	}
	rp.keys = &keyring{keys: cfg.SessionKeys, store: cfg.Store, log: cfg.Logger}
	if rp.redirectPath == "" {
		rp.redirectPath = "/"
	}
	rp.traceJWKS()
	return rp, nil
}

// validIssuer accepts https issuers, and http ones on loopback hosts only,
// for development (OpenID Connect Discovery §3 requires https).
func validIssuer(issuer string) error {
	u, err := url.Parse(issuer)
	if err != nil || !u.IsAbs() || u.Host == "" || u.RawQuery != "" || u.Fragment != "" || u.User != nil {
		return fmt.Errorf("oidcrp: Issuer %q must be an absolute URL without query, fragment or user", issuer)
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && isLoopbackHost(u.Hostname())) {
		return fmt.Errorf("oidcrp: Issuer %q must be https (http only on a loopback host, for development)", issuer)
	}
	return nil
}

func isLoopbackHost(host string) bool {
	if host == "localhost" {
		return true
	}
	ip, err := netip.ParseAddr(host)
	return err == nil && ip.IsLoopback()
}

// Issuer returns the configured issuer.
func (rp *RP) Issuer() string { return rp.cfg.Issuer }

// ClientID returns the client_id in use, or "" before the first successful
// setup.
func (rp *RP) ClientID() string {
	if c := rp.cur.Load(); c != nil {
		return c.creds.ClientID
	}
	return ""
}

// Ready discovers the provider and loads or obtains credentials now, as the
// first request would. Use it to warm up at start or as a readiness check: it
// returns nil when logins can start. A failure wraps ErrUnavailable.
func (rp *RP) Ready(ctx context.Context) error {
	if _, err := rp.conn(ctx); err != nil {
		return err
	}
	_, err := rp.sealer(ctx)
	return err
}

// ServeHTTP answers the callback path and the logout path; any other path
// gets 404. Mount it where those paths are routed when [RP.Require] or
// [RP.Optional] do not wrap them.
func (rp *RP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !rp.serveOwn(w, r) {
		http.NotFound(w, r)
	}
}

// serveOwn answers the RP's own paths and reports whether it did.
func (rp *RP) serveOwn(w http.ResponseWriter, r *http.Request) bool {
	switch r.URL.Path {
	case rp.redirectPath:
		rp.handleCallback(w, r)
	case rp.cfg.LogoutPath:
		rp.handleLogout(w, r)
	default:
		return false
	}
	return true
}
