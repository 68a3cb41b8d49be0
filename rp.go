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
// Config.RedirectURL), Config.LogoutPath and the paths of back- and
// front-channel logout themselves; [RP] is also an http.Handler for those
// paths, and [RP.CallbackHandler], [RP.LogoutHandler],
// [RP.BackchannelLogoutHandler] and [RP.FrontchannelLogoutHandler] serve one
// each, for applications that route them themselves.
package oidcrp

import (
	"context"
	"crypto"
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
	// "https://app.example.com/auth/callback". It is registered as the
	// redirect URI (with those of Metadata.RedirectURIs, and those of the
	// live replicas sharing Store that are configured with another one), and
	// its path is answered by the middleware. Cookies are marked Secure when
	// it is https.
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
	// supports: private_key_jwt (no client secret then exists: the client
	// authenticates with the relying party's own key), then
	// client_secret_basic, client_secret_post and none. Set fields win over
	// these defaults; client_secret_jwt is used when set here or when the
	// provider registers it.
	Metadata ClientMetadata

	// InitialAccessToken is sent as a Bearer token on registration
	// (RFC 7591 §3) when the provider requires one.
	InitialAccessToken Secret

	// ClientID and ClientSecret, when ClientID is set, name a client
	// registered by hand: no registration happens. Its authentication method
	// is Metadata.TokenEndpointAuthMethod (default client_secret_basic).
	ClientID     string
	ClientSecret Secret

	// Store keeps the registered credentials and the generated session keys.
	// Default: a MemoryStore, which registers anew on every start; use a
	// FileStore or a shared store in production.
	Store CredentialStore

	// StoreKey is the key of the credentials in Store.
	// Default: "oidcrp:client:" + Issuer.
	StoreKey string

	// SessionKeys seal session and login cookies (AES-256-GCM). Each key is
	// at least 32 bytes (Secret(b) converts random bytes b); the first
	// seals, all open, so keys can be rotated. Default: a key generated once
	// and kept in Store under "oidcrp:session-keys", shared by every process
	// using that store.
	SessionKeys []Secret

	// SessionStore, when set, keeps sessions server-side in any gorilla
	// sessions.Store (the cookie then carries only its identifier). Default:
	// the session itself travels in a sealed cookie.
	SessionStore sessions.Store

	// SessionName is the session cookie's name. Default: "oidcrp". When
	// RedirectURL is https, the cookie's name is "__Host-" and SessionName,
	// which browsers accept from the host itself only.
	SessionName string

	// SessionLifetime, when positive, ends sessions that long after login.
	// Default: the session ends when the ID token expires.
	SessionLifetime time.Duration

	// ClaimFilter, when set, may delete or rewrite claims (ID token merged
	// with userinfo) before they are kept in the session. iss and sub are
	// always kept. Use it to keep cookies small.
	ClaimFilter func(claims map[string]any)

	// KeepTokens keeps the access token and the refresh token in the
	// session, for handlers that call APIs as the user ([UserClient]).
	// When a refresh token was issued, the middleware refreshes the tokens
	// as they expire, and the session lasts as long as the provider honours
	// the refresh token (within SessionLifetime, when set), rather than
	// ending with the ID token. [UserClient] and [UserTokenSource] need it.
	// At logout the tokens are revoked when the provider has a
	// revocation_endpoint (RFC 7009). Default: tokens are not kept.
	KeepTokens bool

	// PushedAuthorization sends every authorization request through the
	// provider's pushed_authorization_request_endpoint (RFC 9126): the
	// parameters are POSTed there, with the client authenticated as at the
	// token endpoint, and the browser's redirect carries only client_id and
	// the request_uri. A provider without that endpoint then fails the
	// setup. Default: PAR is used only when the provider requires it
	// (require_pushed_authorization_requests).
	PushedAuthorization bool

	// DPoP binds the access and refresh tokens to a key of each session
	// (RFC 9449): the key is made when the login starts and kept with the
	// session (sealed in its cookie, or in the server-side record); the
	// authorization request names it (dpop_jkt), the token and refresh
	// requests carry proofs signed with it, and [UserClient] sends a bound
	// access token as "Authorization: DPoP" with a proof. The registration
	// asks for dpop_bound_access_tokens. A provider nonce challenge
	// (use_dpop_nonce) is answered once, at the token endpoint and at
	// resource servers. A provider whose dpop_signing_alg_values_supported
	// lacks ES256 fails the setup. Default: DPoP is used only when the
	// provider advertises it and the registration (Metadata.Extra) asks for
	// dpop_bound_access_tokens.
	DPoP bool

	// RequestObjects sends every authorization request as a signed request
	// object (RFC 9101, JAR): the parameters go into a JWT signed with the
	// relying party's own key, sent as the request parameter with client_id
	// (and response_type and scope repeated, as OpenID Connect requires);
	// with PAR the request object is pushed. The key (ES256, or RS256 for a
	// provider whose request_object_signing_alg_values_supported lacks
	// ES256; see SigningKey) is registered with request_object_signing_alg.
	// Default: request objects are used only when the provider requires them
	// (require_signed_request_object, in discovery or in the registration).
	RequestObjects bool

	// EncryptedResponses asks the provider to encrypt ID tokens and userinfo
	// responses to the relying party's own encryption key (OIDC Core
	// §10.2): the registration carries id_token_encrypted_response_alg and
	// _enc, and userinfo_encrypted_response_alg and _enc where the provider
	// encrypts userinfo (ECDH-ES, else RSA-OAEP-256, else RSA-OAEP; A256GCM,
	// else A128CBC-HS256). Responses are decrypted, then their signature is
	// verified as for plain ones. A provider that can encrypt ID tokens with
	// none of these fails the setup. Default: responses are encrypted only
	// when Metadata.Extra asks for it (id_token_encrypted_response_alg…),
	// with a key the relying party generates for it.
	EncryptedResponses bool

	// SigningKey, when set, is the relying party's signing key, for
	// private_key_jwt client assertions and request objects, instead of the
	// keys the relying party generates: an ECDSA P-256 key (ES256) or an
	// RSA key of at least 2048 bits (RS256), in memory or behind any
	// crypto.Signer (an HSM, a KMS). It is registered, public half only, but
	// neither stored nor rotated: change it to rotate it. With ClientID, it
	// authenticates a client registered by hand with private_key_jwt.
	//
	// The keys the relying party generates (ES256, else RS256 for
	// signing; ECDH-ES or RSA for encryption) are kept, private parts
	// included, in the Store under StoreKey+"#keys", shared by replicas.
	SigningKey crypto.Signer

	// KeyRotation is how long the relying party's generated keys are used:
	// an older key gets a successor, published before it is used (by an
	// RFC 7592 update of the registration, or in the set served at
	// JWKSURL), and the old key stays published for two hours more, so that
	// nothing signed or encrypted with it is refused. One replica sharing
	// the Store rotates; the periodic maintenance checks hourly. Negative:
	// never. Default: 30 days. [RP.RotateKeys] rotates at once.
	KeyRotation time.Duration

	// JWKSURL, when set, is the public URL of the relying party's JWK Set:
	// the middleware serves the public keys at its path (and
	// [RP.JWKSHandler] anywhere), and it is registered as jwks_uri instead
	// of registering the keys inline (jwks). A key's successor is used an
	// hour after it appears in the set, as providers cache it. Default:
	// keys are registered inline.
	JWKSURL string

	// SkipUserInfo turns off the userinfo request made after each login.
	SkipUserInfo bool

	// AllowCaching, when true, leaves the caching headers of responses to
	// signed-in users to the application. Default: [RP.Require] and
	// [Tenants.Require] set "Cache-Control: no-store" and add
	// "Vary: Cookie" before calling the protected handler (which may
	// override them), so that after sign-out neither the browser's Back
	// button nor a shared cache shows the user's pages.
	AllowCaching bool

	// LogoutPath is the path that ends the session, as the browser sees it
	// (behind a proxy that rewrites paths, mount [RP.LogoutHandler] where
	// the application receives it). Default: "/logout".
	LogoutPath string

	// BackchannelLogoutPath is where the provider POSTs logout tokens
	// (OpenID Connect Back-Channel Logout 1.0), on RedirectURL's origin. It
	// is registered as the backchannel_logout_uri when the provider
	// supports back-channel logout, and answered by the middleware and by
	// [RP.BackchannelLogoutHandler]. Default: "backchannel-logout" next to
	// LogoutPath, so "/backchannel-logout" with the default LogoutPath.
	BackchannelLogoutPath string

	// FrontchannelLogoutPath is the page the provider loads in an iframe at
	// logout (OpenID Connect Front-Channel Logout 1.0), on RedirectURL's
	// origin. It is registered as the frontchannel_logout_uri when the
	// provider supports front-channel logout but not back-channel logout,
	// and answered by the middleware and by
	// [RP.FrontchannelLogoutHandler]. Default: "frontchannel-logout" next
	// to LogoutPath, so "/frontchannel-logout" with the default LogoutPath.
	FrontchannelLogoutPath string

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
)

// RP is an OpenID Connect relying party. It is safe for concurrent use.
type RP struct {
	cfg          *Config // a pointer, so that printing an RP shows no secret
	log          *slog.Logger
	trace        *tracer
	lc           *lifecycle // the provider client
	keys         *keyring   // cookie keys; shared by Tenants
	sessions     *sessionCache
	revocations  *revocations            // ended sessions; shared by Tenants
	longestSeen  atomic.Int64            // longest ID token-bound session seen, in ns
	refreshes    inflight[string, *User] // by session id
	refreshFail  episode                 // failed token refreshes, logged once per outage
	dpopNonces   dpopNonces              // the last DPoP-Nonce of each origin (dpop.go)
	redirectPath string
	jwksPath     string // of Config.JWKSURL, served by the middleware
	secure       bool
	now          func() time.Time
	tenant       string       // set by Tenants
	unanswered   atomic.Int64 // unix ns of the first login started since one last completed; 0: none
	frontchannel rateLimit    // front-channel logout requests that name a provider session
	newKids      rateLimit    // back-channel logout tokens signed with a key id not seen before
	logoutKids   sync.Map     // key ids of valid logout tokens
}

// New validates cfg and returns an RP. It does no network or store I/O:
// discovery and registration happen on the first request that needs them, or
// in [RP.Ready].
func New(cfg Config) (*RP, error) { return newRP(cfg, "", "") }

// newRP is New for a tenant (tenant ""  for a single relying party).
// legacyKey is where an earlier release kept the credentials.
func newRP(cfg Config, tenant, legacyKey string) (*RP, error) {
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
		cfg.Store = new(MemoryStore)
	}
	if cfg.StoreKey == "" {
		cfg.StoreKey = "oidcrp:client"
		legacyKey = "oidcrp:client:" + cfg.Issuer
	}
	for i, k := range cfg.SessionKeys {
		if len(k) < 32 {
			return nil, fmt.Errorf("oidcrp: SessionKeys[%d] is %d bytes; at least 32 are required", i, len(k))
		}
	}
	if cfg.SessionName == "" {
		cfg.SessionName = "oidcrp"
	}
	cfg.SessionName = hostCookieName(cfg.SessionName, ru.Scheme == "https")
	if cfg.LogoutPath == "" {
		cfg.LogoutPath = "/logout"
	}
	if !strings.HasPrefix(cfg.LogoutPath, "/") || cfg.LogoutPath == ru.Path {
		return nil, fmt.Errorf("oidcrp: LogoutPath %q must be a path distinct from the callback path", cfg.LogoutPath)
	}
	dir := cfg.LogoutPath[:strings.LastIndexByte(cfg.LogoutPath, '/')+1]
	if cfg.BackchannelLogoutPath == "" {
		cfg.BackchannelLogoutPath = dir + "backchannel-logout"
	}
	if cfg.FrontchannelLogoutPath == "" {
		cfg.FrontchannelLogoutPath = dir + "frontchannel-logout"
	}
	for _, p := range []struct{ name, path string }{{"BackchannelLogoutPath", cfg.BackchannelLogoutPath}, {"FrontchannelLogoutPath", cfg.FrontchannelLogoutPath}} {
		if !strings.HasPrefix(p.path, "/") || p.path == ru.Path || p.path == cfg.LogoutPath ||
			cfg.BackchannelLogoutPath == cfg.FrontchannelLogoutPath {
			return nil, fmt.Errorf("oidcrp: %s %q must be a path distinct from the callback path, LogoutPath and each other", p.name, p.path)
		}
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
	case "", "client_secret_basic", "client_secret_post", "client_secret_jwt", "private_key_jwt", "none":
	default:
		return nil, fmt.Errorf("oidcrp: token_endpoint_auth_method %q is not supported (private_key_jwt, client_secret_basic, client_secret_post, client_secret_jwt, none)", cfg.Metadata.TokenEndpointAuthMethod)
	}
	jwksPath := ""
	keys := &keyManager{store: cfg.Store, key: cfg.StoreKey + "#keys", log: cfg.Logger.With("issuer", cfg.Issuer), rotation: cfg.KeyRotation}
	if keys.rotation == 0 {
		keys.rotation = defaultKeyRotation
	}
	if cfg.SigningKey != nil {
		if keys.own, err = ownKey(cfg.SigningKey); err != nil {
			return nil, err
		}
	}
	if cfg.ClientID != "" && cfg.Metadata.TokenEndpointAuthMethod == "private_key_jwt" && keys.own == nil {
		return nil, errors.New("oidcrp: a client configured by hand (ClientID) with private_key_jwt needs Config.SigningKey")
	}
	if cfg.JWKSURL != "" {
		u, err := url.Parse(cfg.JWKSURL)
		if err != nil || !u.IsAbs() || u.Host == "" || u.Fragment != "" || (u.Scheme != "https" && u.Scheme != "http") ||
			slices.Contains([]string{ru.Path, cfg.LogoutPath, cfg.BackchannelLogoutPath, cfg.FrontchannelLogoutPath}, u.Path) {
			return nil, fmt.Errorf("oidcrp: JWKSURL %q must be an absolute http(s) URL whose path is none of the relying party's other paths", cfg.JWKSURL)
		}
		keys.served = true
		jwksPath = u.Path
	}
	rp := &RP{
		cfg:          &cfg,
		log:          cfg.Logger.With("issuer", cfg.Issuer),
		redirectPath: ru.Path,
		jwksPath:     jwksPath,
		secure:       ru.Scheme == "https",
		now:          time.Now,
		sessions:     newSessionCache(),
		tenant:       tenant,
	}
	if rp.redirectPath == "" {
		rp.redirectPath = "/"
	}
	rp.keys = &keyring{keys: cfg.SessionKeys, store: cfg.Store, log: cfg.Logger}
	rp.revocations = newRevocations(cfg.Store, rp.log, func() time.Time { return rp.now() })
	rp.trace = &tracer{trace: cfg.Trace, issuer: cfg.Issuer, tenant: tenant, log: rp.log}
	rp.lc = &lifecycle{
		cfg:       rp.cfg,
		log:       rp.log,
		trace:     rp.trace,
		now:       func() time.Time { return rp.now() }, // tests replace rp.now
		legacyKey: legacyKey,
		keys:      keys,
	}
	keys.now = rp.lc.now
	rp.lc.http = rp.trace.traceJWKS(limitResponses(cfg.HTTPClient), rp.clientID)
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

// clientID returns the client_id in use, or "" before the first successful
// setup.
func (rp *RP) clientID() string {
	if c := rp.lc.cur.Load(); c != nil {
		return c.creds.ClientID
	}
	return ""
}

// Ready discovers the provider and loads or obtains credentials now, as the
// first request would. Use it to warm up at start or as a readiness check: it
// returns nil when logins can start. A failure wraps ErrUnavailable.
func (rp *RP) Ready(ctx context.Context) error {
	if _, err := rp.lc.client(ctx); err != nil {
		return err
	}
	_, err := rp.keys.sealer(ctx)
	return err
}

// Status is the state of a relying party's registration, for readiness
// probes and debug pages. It holds no secrets.
type Status struct {
	Issuer          string    `json:"issuer"`
	Tenant          string    `json:"tenant,omitempty"`
	Ready           bool      `json:"ready"`                      // logins can start now
	ClientID        string    `json:"client_id,omitempty"`        // in use
	AuthMethod      string    `json:"auth_method,omitempty"`      // token endpoint authentication
	RegisteredAt    time.Time `json:"registered_at,omitzero"`     // client or current secret obtained
	SecretExpiresAt time.Time `json:"secret_expires_at,omitzero"` // zero: never
	LastError       string    `json:"last_error,omitempty"`       // of the last failed setup
	RetryAt         time.Time `json:"retry_at,omitzero"`          // next setup attempt after a failure

	// KeyError says why the last publication of the relying party's new
	// keys failed (the provider refused the update); the registered keys
	// stay in use until a publication succeeds. Empty otherwise.
	KeyError string `json:"key_error,omitempty"`

	// OrphanedRegistrations counts registrations this process found that
	// were made but never stored: a process registered a client and stopped
	// before the store kept its credentials, so the client is left at the
	// provider, unused. Each is counted once, by the process that finds it,
	// and logged as a warning naming the time of the registration.
	OrphanedRegistrations int `json:"orphaned_registrations,omitempty"`

	// SecretExpiresIn is SecretExpiresAt less the time of the Status call:
	// zero when the secret never expires (or there is none yet), negative
	// once it has expired. JSON carries secret_expires_at instead.
	SecretExpiresIn time.Duration `json:"-"`
}

// Status reports the registration state without any I/O.
func (rp *RP) Status() Status {
	s := Status{Issuer: rp.cfg.Issuer, Tenant: rp.tenant}
	rp.lc.status(&s)
	rp.lc.orphans(&s)
	return s
}

// Decommission deletes the client registration at the provider (RFC 7592
// §2.3), registrations it superseded, the stored credentials and the relying
// party's stored keys (registered with the client, so of no further use), so
// nothing is left behind; the next request that needs a login registers anew. A
// registration without a client configuration endpoint cannot be deleted at
// the provider: its credentials are still removed from the store, and the
// error says so.
func (rp *RP) Decommission(ctx context.Context) error { return rp.lc.decommission(ctx) }

// ServeHTTP answers the callback path, the logout path and the back- and
// front-channel logout paths; any other path
// gets 404, except an authorization response that was routed elsewhere (see
// [RP.Require]). A path matches as the handler sees it (r.URL.Path) or as the
// server received it (r.RequestURI), so the RP may be mounted as it is, e.g.
// mux.Handle("/auth/", rp) with RedirectURL's path and LogoutPath under
// /auth/, or under http.StripPrefix. Applications that route each path
// themselves use [RP.CallbackHandler] and [RP.LogoutHandler].
func (rp *RP) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	if !rp.serveOwn(w, r) {
		http.NotFound(w, r)
	}
}

// serveOwn answers the RP's own paths (callback, logout, back- and
// front-channel logout), and an authorization response
// wherever it arrives, and reports whether it did.
func (rp *RP) serveOwn(w http.ResponseWriter, r *http.Request) bool {
	received := receivedPath(r)
	switch {
	case atPath(r, received, rp.redirectPath):
		rp.handleCallback(w, r)
	case atPath(r, received, rp.cfg.LogoutPath):
		rp.handleLogout(w, r)
	case atPath(r, received, rp.cfg.BackchannelLogoutPath):
		rp.handleBackchannelLogout(w, r)
	case atPath(r, received, rp.cfg.FrontchannelLogoutPath):
		rp.handleFrontchannelLogout(w, r)
	case rp.jwksPath != "" && atPath(r, received, rp.jwksPath):
		rp.serveJWKS(w, r)
	case isAuthResponse(r):
		rp.misrouted(w, r)
	default:
		return false
	}
	return true
}

// Format prints the relying party as its issuer and client, never its
// configuration's secrets, whatever the verb.
func (rp *RP) Format(f fmt.State, verb rune) {
	fmt.Fprintf(f, "oidcrp.RP{Issuer: %q, Tenant: %q, ClientID: %q}", rp.cfg.Issuer, rp.tenant, rp.clientID())
}
