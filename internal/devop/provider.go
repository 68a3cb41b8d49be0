// Package devop is an in-process OpenID Provider for development and tests.
//
// Development provider — not for production. It knows a single demo user,
// lets anyone sign in as that user with one click (or none, with
// [Options.AutoLogin]), keeps all state in memory and serves plain HTTP when
// started with [Start]. Never expose it to a network or trust what it issues.
//
// It has two uses:
//
//   - the embedded development provider that the example application starts
//     when it is run without flags ([Start], loopback addresses only);
//   - the fake provider for unit tests ([New] behind an httptest server),
//     including hostile behaviour that no real provider produces, through the
//     hooks in [Options] and helpers such as [Provider.SignWithForeignKey].
//
// Where it is not deliberately mutated by a hook it follows the specifications:
// OpenID Connect Core 1.0 (authorization code flow), OpenID Connect Discovery
// 1.0, OAuth 2.0 Dynamic Client Registration (RFC 7591) and its management
// protocol (RFC 7592), PKCE (RFC 7636, S256 only and always required), the
// "iss" authorization response parameter (RFC 9207), encrypted ID tokens and
// signed or encrypted userinfo responses (OpenID Connect Core §10.2 and
// §5.3.2, to a key of the client's inline jwks) and OpenID Connect
// RP-Initiated Logout 1.0.
//
// Endpoints, relative to the issuer (which may have a path component):
//
//	/.well-known/openid-configuration  discovery document
//	/jwks                              JSON Web Key Set
//	/register                          client registration (RFC 7591)
//	/register/{client_id}              client configuration (RFC 7592)
//	/authorize                         authorization endpoint
//	/login                             target of the one-click sign-in page
//	/token                             token endpoint
//	/par                               pushed authorization requests (RFC 9126; [Options.PAR])
//	/userinfo                          UserInfo endpoint
//	/end_session                       RP-initiated logout
//	/revoke                            token revocation (RFC 7009)
//
// Clients authenticate (at the token, PAR and revocation endpoints) with
// client_secret_basic, client_secret_post, none, client_secret_jwt or
// private_key_jwt (RFC 7523, with the client's registered jwks or the set at
// its jwks_uri); the JWT methods must be listed in [Options.AuthMethods] to
// be registered. Other methods may be advertised through [Options.AuthMethods]
// (for discovery tests) and registered, but such clients fail client
// authentication with invalid_client.
package devop

import (
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"slices"
	"sort"
	"strings"
	"sync"
	"time"
)

const (
	// SSOCookieName is the name of the provider's single sign-on cookie. It is
	// set when the demo user signs in and cleared by the end-session endpoint.
	SSOCookieName = "devop_sso"

	// CodeLifetime is how long an authorization code stays redeemable.
	CodeLifetime = 60 * time.Second

	// NotForProduction is the warning shown on every HTML page.
	NotForProduction = "Development provider — not for production"

	pendingLifetime = 10 * time.Minute
	maxBodyBytes    = 64 << 10
)

// AllAuthMethods are the token endpoint authentication methods devop
// implements, private_key_jwt first, for a provider that offers them all.
var AllAuthMethods = []string{"private_key_jwt", "client_secret_basic", "client_secret_post", "client_secret_jwt", "none"}

// Options configures a Provider. The zero value is a working provider that
// shows a one-click sign-in page.
type Options struct {
	// InitialAccessToken, when set, is required as "Authorization: Bearer <t>"
	// on registration; otherwise the provider answers 401 with
	// `WWW-Authenticate: Bearer error="invalid_token"` and the JSON body
	// {"error":"invalid_token",...}.
	InitialAccessToken string

	// SecretLifetime sets client_secret_expires_at = now + SecretLifetime.
	// Zero means client_secret_expires_at 0: the secret never expires. A
	// negative value issues secrets that are already expired.
	SecretLifetime time.Duration

	// AutoLogin signs the demo user in without a page. Otherwise /authorize
	// shows a one-click HTML page whose button POSTs back (with the pending
	// request id) to complete the login.
	AutoLogin bool

	// AwkwardSecrets makes issued client secrets contain characters that
	// must be form-urlencoded in HTTP Basic authentication (RFC 6749
	// §2.3.1), such as ':', '+', '%', '&', '=', '/' and a space.
	AwkwardSecrets bool

	// RawBasic compares HTTP Basic client credentials as they come, without
	// the form-urldecoding RFC 6749 §2.3.1 requires, as some deployed
	// providers do: a client that encodes its id or secret as the RFC says
	// is then refused whenever encoding changes them.
	RawBasic bool

	// AnyAuthMethod accepts a client's secret by any method
	// (client_secret_basic or client_secret_post), whatever it registered.
	AnyAuthMethod bool

	// Claims of the single demo user. The default is sub "demo-user", name
	// "Demo User", email "demo@example.test", email_verified true and groups
	// ["staff"]. When set, these claims replace the defaults ("sub" defaults
	// to "demo-user" if missing). They are returned in the ID token (next to
	// the standard claims, which take precedence) and from the UserInfo
	// endpoint, whatever the requested scopes.
	Claims map[string]any

	// AuthMethods is token_endpoint_auth_methods_supported. The default is
	// client_secret_basic, client_secret_post and none; [AllAuthMethods]
	// offers every method devop implements.
	AuthMethods []string

	// AssertionIssuerAudienceOnly accepts client assertions (RFC 7523)
	// only when their aud names the issuer, not the token endpoint, as some
	// providers do.
	AssertionIssuerAudienceOnly bool

	// RefuseKeyChanges makes RFC 7592 updates that change a client's jwks
	// fail with invalid_client_metadata, as by a provider that will not take
	// a client's new keys. [Provider.SetRefuseKeyChanges] changes it later.
	RefuseKeyChanges bool

	// HTTPClient fetches the key sets of clients registered with jwks_uri.
	// Default: http.DefaultClient.
	HTTPClient *http.Client

	// ForceAuthMethod, when set, replaces whatever token_endpoint_auth_method
	// the client asked for at registration (without checking it against
	// AuthMethods).
	ForceAuthMethod string

	// NoRegistration removes registration_endpoint from discovery; the
	// registration and client configuration endpoints answer 404.
	NoRegistration bool

	// NoEndSession removes end_session_endpoint from discovery; the endpoint
	// answers 404.
	NoEndSession bool

	// NoRevocation removes revocation_endpoint from discovery; the endpoint
	// answers 404.
	NoRevocation bool

	// RotateRegistrationToken issues a fresh registration_access_token on
	// every RFC 7592 GET and PUT; the previous token stops working.
	RotateRegistrationToken bool

	// Now, when set, is the provider's clock (tests share one with the
	// relying party). Default: time.Now.
	Now func() time.Time

	// SigningKey, when set, is the initial RS256 signing key instead of a
	// newly generated RSA-2048 key. Generating the key is most of the cost
	// of New, so tests that start many providers pass keys generated once.
	// [Provider.RotateKeys] still generates its replacement.
	SigningKey *rsa.PrivateKey

	// PAR serves a pushed authorization request endpoint (RFC 9126) at /par
	// and advertises it as pushed_authorization_request_endpoint. The
	// authorization endpoint then takes a request_uri it issued (once, with
	// the client_id that pushed it) in place of the request's parameters.
	PAR bool
	// RequirePAR implies PAR, advertises require_pushed_authorization_requests
	// and refuses authorization requests that were not pushed
	// (invalid_request, sent back to the redirect URI).
	RequirePAR bool
	// HidePAREndpoint leaves pushed_authorization_request_endpoint out of
	// discovery (the endpoint is still served when PAR or RequirePAR is set):
	// with RequirePAR, a provider that requires PAR without saying where.
	HidePAREndpoint bool

	// RequestObjects takes signed request objects (RFC 9101) at the
	// authorization and PAR endpoints, verified with the client's registered
	// jwks (ES256 or RS256), and advertises request_parameter_supported and
	// request_object_signing_alg_values_supported. The parameters are taken
	// from inside; a request object that does not verify gets an error page
	// (or invalid_request_object at the PAR endpoint).
	RequestObjects bool
	// RequireRequestObjects implies RequestObjects, advertises
	// require_signed_request_object and refuses authorization requests
	// without a request object (invalid_request, sent back to the redirect
	// URI).
	RequireRequestObjects bool

	// DPoP accepts DPoP proofs (RFC 9449, ES256 only) at the token and
	// userinfo endpoints and advertises dpop_signing_alg_values_supported.
	// A token request with a proof gets an access token of token_type DPoP
	// bound to the proof's key, which the userinfo endpoint then accepts
	// only as "Authorization: DPoP" with a proof of that key naming the
	// token (ath). A code issued for a dpop_jkt is redeemed only with a
	// proof of that key. Proofs are checked minimally: typ, alg, the
	// embedded key's signature, htm, htu, iat within a minute, ath, nonce.
	DPoP bool
	// DPoPNonce, with DPoP, makes the token endpoint (400) and the userinfo
	// endpoint (401) answer use_dpop_nonce with a fresh DPoP-Nonce to a
	// proof without the current nonce.
	DPoPNonce bool

	// Responses to clients that registered encryption or userinfo signing
	// (encryption.go) are signed and/or encrypted as registered; these
	// options make them hostile. PlainResponses sends plain ID tokens and
	// JSON userinfo despite the registration. EncryptToForeignKey encrypts
	// to a fresh key under the kid of the client's key, which the client
	// cannot decrypt. EncryptionAlg and EncryptionEnc, when set, replace
	// the registered alg and enc (the alg encrypts to the key chosen for the
	// registered one, so it must suit that key's type). EncryptToLastKey encrypts to the last
	// suitable key of the client's jwks instead of the first (after a key
	// rotation, the client's older key).
	PlainResponses      bool
	EncryptToForeignKey bool
	EncryptionAlg       string
	EncryptionEnc       string
	EncryptToLastKey    bool

	// IDTokenLifetime is the lifetime of ID tokens (default 1h).
	IDTokenLifetime time.Duration
	// AccessTokenLifetime is the lifetime of access tokens (default 1h).
	AccessTokenLifetime time.Duration

	// The hooks below serve hostile-provider tests. Each is optional and is
	// called with the provider's intended value, which it may modify in
	// place. Hooks are called without internal locks held, so they may call
	// the Provider's methods.

	// Discovery modifies the discovery document.
	Discovery func(doc map[string]any)
	// RegistrationRequest modifies the client metadata of every registration
	// (POST /register) and RFC 7592 update (PUT) request before the provider
	// validates it: the client is registered with what the hook leaves, as by
	// a provider that ignores or overrides part of what a client asks for
	// (for example, deleting post_logout_redirect_uris registers none).
	RegistrationRequest func(metadata map[string]any)
	// Registration modifies every response of the registration endpoint
	// (POST /register), errors included: status and JSON body. The client is
	// registered as the provider intended whatever the hook does.
	Registration func(status *int, body map[string]any)
	// ClientConfiguration modifies every response of the RFC 7592 client
	// configuration endpoint; method is GET, PUT or DELETE. For DELETE the
	// body starts empty and is only written if the hook changes the status
	// away from 204 No Content.
	ClientConfiguration func(method string, status *int, body map[string]any)
	// Authorize modifies the parameters added to the redirect back to the
	// client (code, state, iss, or error, error_description, state, iss).
	// Query parameters that are part of the registered redirect URI are kept
	// and are not passed to the hook.
	Authorize func(redirect url.Values)
	// IDToken modifies the claims and the JOSE header of an ID token before
	// it is signed. Setting header "alg" to "none" produces an unsigned
	// token; see [Provider.SignJWT] for the other values.
	IDToken func(claims map[string]any, header map[string]any)
	// TokenResponse modifies the successful token endpoint JSON response.
	TokenResponse func(body map[string]any)
	// UserInfo modifies the UserInfo response claims.
	UserInfo func(claims map[string]any)
	// PushedAuthorization modifies every response of the pushed
	// authorization request endpoint, errors included: status and JSON body.
	// A request the provider accepted is kept whatever the hook does.
	PushedAuthorization func(status *int, body map[string]any)
	// Revocation is called first at every revocation request (POST
	// /revoke) with the status it would answer, 200. Changing it answers
	// that status with a server_error and revokes nothing; the hook may
	// also block, as an unresponsive endpoint would.
	Revocation func(status *int)
}

// Stats counts requests per endpoint, whatever their outcome.
type Stats struct {
	Discovery           int // discovery document requests
	JWKS                int // JWKS requests
	Registration        int // requests to the registration endpoint
	RegistrationRead    int // RFC 7592 GET requests
	RegistrationUpdate  int // RFC 7592 PUT requests
	RegistrationDelete  int // RFC 7592 DELETE requests
	Authorize           int // authorization requests (not sign-in page submissions)
	Token               int // token endpoint requests
	UserInfo            int // UserInfo requests
	EndSession          int // end-session requests
	PAR                 int // pushed authorization requests
	RequestObjects      int // authorization requests made with a request object that verified
	Revocation          int // revocation requests (RFC 7009)
	DPoPProofs          int // DPoP proofs accepted (RFC 9449; [Options.DPoP])
	DPoPNonceChallenges int // use_dpop_nonce answers ([Options.DPoPNonce])
	ClientAssertions    int // client assertions accepted (private_key_jwt, client_secret_jwt)
	JWKSFetches         int // fetches of a client's jwks_uri
}

// Client is a registered client as the provider stores it.
type Client struct {
	// ID is the client_id.
	ID string
	// Secret is the client_secret; empty for token_endpoint_auth_method none.
	Secret string
	// SecretExpiresAt is when the secret expires; the zero time means never
	// (client_secret_expires_at 0).
	SecretExpiresAt time.Time
	// IssuedAt is client_id_issued_at.
	IssuedAt time.Time
	// AuthMethod is the registered token_endpoint_auth_method.
	AuthMethod string
	// RedirectURIs are the registered redirect_uris.
	RedirectURIs []string
	// PostLogoutRedirectURIs are the registered post_logout_redirect_uris.
	PostLogoutRedirectURIs []string
	// GrantTypes are the registered grant_types.
	GrantTypes []string
	// RegistrationAccessToken is the current RFC 7592 access token.
	RegistrationAccessToken string
	// Metadata is the registered client metadata, as echoed in registration
	// responses, without the server-assigned credentials. Numbers are
	// json.Number values.
	Metadata map[string]any
}

// Provider is an in-memory OpenID Provider. It is safe for concurrent use.
// Create it with [New] or [Start].
type Provider struct {
	opts Options
	user map[string]any // immutable after New

	foreignOnce sync.Once
	foreign     *signingKey

	mu        sync.Mutex
	issuer    string
	basePath  string
	secure    bool
	key       *signingKey
	retired   []*signingKey
	clients   map[string]*client
	clientSeq int
	codes     map[string]*authCode
	pending   map[string]*authRequest
	access    map[string]*accessToken
	refresh   map[string]*refreshToken
	sessions  map[string]*session
	pushed    map[string]*pushedRequest
	stats     Stats
	dpopNonce string // the current DPoP nonce (Options.DPoPNonce)

	assertions       []Assertion           // accepted client assertions
	jtis             map[string]time.Time  // client_id and jti of accepted assertions → their exp
	jwksCache        map[string]cachedJWKS // jwks_uri → the set fetched
	refuseKeyChanges bool

	lastAuthorize   url.Values
	lastTokenForm   url.Values
	lastTokenHeader http.Header
	lastPARForm     url.Values
	lastPARHeader   http.Header
}

// New returns a provider configured by opts. It performs no I/O; unless
// [Options.SigningKey] is set, it generates an RSA-2048 signing key (RS256,
// with a kid). [Provider.SetIssuer]
// must be called before the provider serves its first request.
func New(opts Options) *Provider {
	if opts.Now == nil {
		opts.Now = time.Now
	}
	if opts.IDTokenLifetime <= 0 {
		opts.IDTokenLifetime = time.Hour
	}
	if opts.AccessTokenLifetime <= 0 {
		opts.AccessTokenLifetime = time.Hour
	}
	if len(opts.AuthMethods) == 0 {
		opts.AuthMethods = []string{"client_secret_basic", "client_secret_post", "none"}
	} else {
		opts.AuthMethods = slices.Clone(opts.AuthMethods)
	}
	user := map[string]any{
		"sub":            "demo-user",
		"name":           "Demo User",
		"email":          "demo@example.test",
		"email_verified": true,
		"groups":         []string{"staff"},
	}
	if opts.Claims != nil {
		user = deepCopyMap(opts.Claims)
		if _, ok := user["sub"].(string); !ok {
			user["sub"] = "demo-user"
		}
	}
	key := newSigningKey
	if opts.SigningKey != nil {
		key = func() *signingKey { return signingKeyFor(opts.SigningKey) }
	}
	return &Provider{
		opts:     opts,
		user:     user,
		key:      key(),
		clients:  map[string]*client{},
		codes:    map[string]*authCode{},
		pending:  map[string]*authRequest{},
		access:   map[string]*accessToken{},
		refresh:  map[string]*refreshToken{},
		sessions: map[string]*session{},
		pushed:   map[string]*pushedRequest{},

		jtis:             map[string]time.Time{},
		jwksCache:        map[string]cachedJWKS{},
		refuseKeyChanges: opts.RefuseKeyChanges,
	}
}

func (p *Provider) now() time.Time { return p.opts.Now() }

// SetIssuer sets the issuer identifier: an absolute http or https URL without
// query or fragment, optionally with a path. A trailing slash is removed.
// Every endpoint is served under the issuer's path. It must be called before
// the first request (in tests: after the httptest server has started). It
// panics if issuer is not a valid issuer URL.
func (p *Provider) SetIssuer(issuer string) {
	issuer = strings.TrimRight(issuer, "/")
	u, err := url.Parse(issuer)
	if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" ||
		u.RawQuery != "" || u.Fragment != "" || strings.Contains(issuer, "#") || u.User != nil {
		panic(fmt.Sprintf("devop: invalid issuer %q", issuer))
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.issuer = issuer
	p.basePath = u.EscapedPath()
	p.secure = u.Scheme == "https"
}

// Issuer returns the issuer identifier set by [Provider.SetIssuer].
func (p *Provider) Issuer() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.issuer
}

// ServeHTTP serves all endpoints under the issuer's path.
func (p *Provider) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p.mu.Lock()
	issuer, base := p.issuer, p.basePath
	p.mu.Unlock()
	if issuer == "" {
		writeError(w, http.StatusInternalServerError, "server_error", "devop: SetIssuer has not been called")
		return
	}
	path := r.URL.EscapedPath()
	if base != "" {
		if path != base && !strings.HasPrefix(path, base+"/") {
			notFound(w, r)
			return
		}
		path = strings.TrimPrefix(path, base)
	}
	switch {
	case path == "" || path == "/":
		p.handleIndex(w, r)
	case path == "/.well-known/openid-configuration":
		p.handleDiscovery(w, r)
	case path == "/jwks":
		p.handleJWKS(w, r)
	case path == "/register" && !p.opts.NoRegistration:
		p.handleRegister(w, r)
	case strings.HasPrefix(path, "/register/") && !p.opts.NoRegistration:
		id, err := url.PathUnescape(strings.TrimPrefix(path, "/register/"))
		if err != nil {
			notFound(w, r)
			return
		}
		p.handleClientConfiguration(w, r, id)
	case path == "/authorize":
		p.handleAuthorize(w, r)
	case path == "/login":
		p.handleLogin(w, r)
	case path == "/token":
		p.handleToken(w, r)
	case path == "/par" && p.parServed():
		p.handlePAR(w, r)
	case path == "/userinfo":
		p.handleUserInfo(w, r)
	case path == "/end_session" && !p.opts.NoEndSession:
		p.handleEndSession(w, r)
	case path == "/revoke" && !p.opts.NoRevocation:
		p.handleRevocation(w, r)
	default:
		notFound(w, r)
	}
}

func (p *Provider) handleDiscovery(w http.ResponseWriter, r *http.Request) {
	p.count(func(s *Stats) { s.Discovery++ })
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	issuer := p.Issuer()
	claims := []string{"iss", "sub", "aud", "exp", "iat", "auth_time", "nonce", "at_hash"}
	var userClaims []string
	for k := range p.user {
		if !slices.Contains(claims, k) {
			userClaims = append(userClaims, k)
		}
	}
	sort.Strings(userClaims)
	claims = append(claims, userClaims...)
	doc := map[string]any{
		"issuer":                                         issuer,
		"authorization_endpoint":                         issuer + "/authorize",
		"token_endpoint":                                 issuer + "/token",
		"userinfo_endpoint":                              issuer + "/userinfo",
		"jwks_uri":                                       issuer + "/jwks",
		"scopes_supported":                               []string{"openid", "profile", "email"},
		"response_types_supported":                       []string{"code"},
		"response_modes_supported":                       []string{"query"},
		"grant_types_supported":                          []string{"authorization_code", "refresh_token"},
		"subject_types_supported":                        []string{"public"},
		"id_token_signing_alg_values_supported":          []string{"RS256"},
		"token_endpoint_auth_methods_supported":          slices.Clone(p.opts.AuthMethods),
		"code_challenge_methods_supported":               []string{"S256"},
		"claims_supported":                               claims,
		"prompt_values_supported":                        []string{"none", "login"},
		"authorization_response_iss_parameter_supported": true,
		"claims_parameter_supported":                     false,
		"request_parameter_supported":                    p.requestObjectsServed(),
		"request_uri_parameter_supported":                false,
	}
	if !p.opts.NoRegistration {
		doc["registration_endpoint"] = issuer + "/register"
	}
	if !p.opts.NoEndSession {
		doc["end_session_endpoint"] = issuer + "/end_session"
	}
	if p.parServed() && !p.opts.HidePAREndpoint {
		doc["pushed_authorization_request_endpoint"] = issuer + "/par"
	}
	if p.opts.RequirePAR {
		doc["require_pushed_authorization_requests"] = true
	}
	if p.requestObjectsServed() {
		doc["request_object_signing_alg_values_supported"] = []string{"ES256", "RS256"}
	}
	if p.opts.RequireRequestObjects {
		doc["require_signed_request_object"] = true
	}
	jwtAuth := slices.ContainsFunc(p.opts.AuthMethods, jwtMethod)
	if jwtAuth {
		doc["token_endpoint_auth_signing_alg_values_supported"] = slices.Clone(assertionAlgs)
	}
	if p.opts.DPoP {
		doc["dpop_signing_alg_values_supported"] = []string{"ES256"}
	}
	advertiseEncryption(doc)
	if !p.opts.NoRevocation {
		doc["revocation_endpoint"] = issuer + "/revoke"
		doc["revocation_endpoint_auth_methods_supported"] = slices.Clone(p.opts.AuthMethods)
		if jwtAuth {
			doc["revocation_endpoint_auth_signing_alg_values_supported"] = slices.Clone(assertionAlgs)
		}
	}
	if p.opts.Discovery != nil {
		p.opts.Discovery(doc)
	}
	writeJSON(w, http.StatusOK, doc)
}

func (p *Provider) handleIndex(w http.ResponseWriter, r *http.Request) {
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	issuer := p.Issuer()
	writePage(w, http.StatusOK, page{
		Title:   "OpenID Provider",
		Message: "This in-memory OpenID Provider signs everyone in as a single demo user.",
		Details: []detail{
			{"Issuer", issuer},
			{"Discovery", issuer + "/.well-known/openid-configuration"},
		},
	})
}

// count applies f to the statistics under the lock.
func (p *Provider) count(f func(*Stats)) {
	p.mu.Lock()
	f(&p.stats)
	p.mu.Unlock()
}

// Stats returns a snapshot of the request counters.
func (p *Provider) Stats() Stats {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.stats
}

// LastAuthorizeRequest returns the parameters of the most recent
// authorization request, or nil if there was none.
func (p *Provider) LastAuthorizeRequest() url.Values {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cloneValues(p.lastAuthorize)
}

// LastTokenRequest returns the form and the headers of the most recent token
// endpoint request, or nils if there was none.
func (p *Provider) LastTokenRequest() (form url.Values, header http.Header) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cloneValues(p.lastTokenForm), p.lastTokenHeader.Clone()
}

// Clients returns a copy of the registered clients, in registration order.
func (p *Provider) Clients() []Client {
	p.mu.Lock()
	defer p.mu.Unlock()
	list := make([]*client, 0, len(p.clients))
	for _, c := range p.clients {
		list = append(list, c)
	}
	sort.Slice(list, func(i, j int) bool { return list[i].seq < list[j].seq })
	out := make([]Client, 0, len(list))
	for _, c := range list {
		out = append(out, c.export())
	}
	return out
}

// ForgetClients drops every registered client, as a restarted provider
// would, together with the codes, pending sign-ins and tokens issued to them.
// Signing keys and the demo user's SSO sessions are kept.
func (p *Provider) ForgetClients() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.clients = map[string]*client{}
	p.codes = map[string]*authCode{}
	p.pending = map[string]*authRequest{}
	p.access = map[string]*accessToken{}
	p.refresh = map[string]*refreshToken{}
	p.pushed = map[string]*pushedRequest{}
}

// EndSessions forgets the demo user's SSO sessions: the next authorization
// request needs a new sign-in, whatever cookie the browser sends.
func (p *Provider) EndSessions() {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.sessions = map[string]*session{}
}

// Start serves a new provider on a loopback listener and returns it with a
// function that stops the server. The listener is bound to addr, which must
// be a loopback address with a port ("127.0.0.1:8080", "[::1]:0",
// "localhost:9000"), or 127.0.0.1 on a free port when addr is "". The issuer
// is http://ADDR followed by pathPrefix (for example "/oidc"; "" for none).
func Start(addr, pathPrefix string, opts Options) (p *Provider, stop func(), err error) {
	listenAddr, hostname, err := loopbackAddr(addr)
	if err != nil {
		return nil, nil, err
	}
	prefix, err := cleanPrefix(pathPrefix)
	if err != nil {
		return nil, nil, err
	}
	return start(listenAddr, hostname, prefix, opts)
}

func randomToken(n int) string {
	b := make([]byte, n)
	if _, err := rand.Read(b); err != nil {
		panic("devop: " + err.Error())
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

func writeJSON(w http.ResponseWriter, status int, body any) {
	b, err := json.Marshal(body)
	if err != nil {
		http.Error(w, "devop: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "application/json")
	h.Set("Cache-Control", "no-store")
	h.Set("Pragma", "no-cache")
	w.WriteHeader(status)
	if status != http.StatusNoContent && status != http.StatusNotModified {
		_, _ = w.Write(b)
	}
}

// notFound answers 404 with a JSON error.
func notFound(w http.ResponseWriter, r *http.Request) {
	writeError(w, http.StatusNotFound, "not_found", "no endpoint at "+r.URL.Path)
}

func errorBody(code, description string) map[string]any {
	return map[string]any{"error": code, "error_description": description}
}

func writeError(w http.ResponseWriter, status int, code, description string) {
	writeJSON(w, status, errorBody(code, description))
}

// allowMethods reports whether r uses one of methods; otherwise it answers
// 405 with a JSON error.
func allowMethods(w http.ResponseWriter, r *http.Request, methods ...string) bool {
	if slices.Contains(methods, r.Method) {
		return true
	}
	w.Header().Set("Allow", strings.Join(methods, ", "))
	writeError(w, http.StatusMethodNotAllowed, "invalid_request", "method "+r.Method+" is not allowed")
	return false
}

// bearerToken extracts the token of an "Authorization: Bearer" header.
func bearerToken(r *http.Request) (string, bool) {
	h := r.Header.Get("Authorization")
	scheme, tok, ok := strings.Cut(h, " ")
	if !ok || !strings.EqualFold(scheme, "Bearer") {
		return "", false
	}
	tok = strings.TrimSpace(tok)
	return tok, tok != ""
}

func cloneValues(v url.Values) url.Values {
	if v == nil {
		return nil
	}
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = slices.Clone(vs)
	}
	return out
}

func deepCopyMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	out := make(map[string]any, len(m))
	for k, v := range m {
		out[k] = deepCopy(v)
	}
	return out
}

func deepCopy(v any) any {
	switch v := v.(type) {
	case map[string]any:
		return deepCopyMap(v)
	case []any:
		out := make([]any, len(v))
		for i, e := range v {
			out[i] = deepCopy(e)
		}
		return out
	case []string:
		return slices.Clone(v)
	case map[string]string:
		out := make(map[string]string, len(v))
		for k, e := range v {
			out[k] = e
		}
		return out
	default:
		return v
	}
}
