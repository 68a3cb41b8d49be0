package oidcrp

import (
	"cmp"
	"context"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/binary"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Require returns middleware that lets only signed-in users through to next,
// with the user in the request context ([UserFromContext]). A browser
// navigation without a session is redirected to the provider to sign in and
// comes back to the URL it asked for; any other request gets 401.
//
// It also answers the callback path (the path of Config.RedirectURL) and
// Config.LogoutPath, matched against the path as next would see it and as
// the server received it (r.RequestURI), so it works under http.StripPrefix
// and sub-routers. An authorization response for a login this browser
// started (its state, a code or an error, and the browser's login cookie for
// that state) is completed wherever it arrives, with a warning naming the
// paths, rather than treated as a page needing a login: a callback routed
// to the wrong path cannot send the browser back and forth to the provider.
//
// Responses to signed-in users carry "Cache-Control: no-store" and
// "Vary: Cookie", set before next is called (next may replace them), so that
// neither shared caches nor the browser's history keep a user's pages after
// sign-out; Config.AllowCaching turns this off.
func (rp *RP) Require(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rp.require(w, r, next) })
}

func (rp *RP) require(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if rp.serveOwn(w, r) {
		return
	}
	if u := rp.user(w, r); u != nil {
		if !rp.cfg.AllowCaching {
			noStore(w.Header()) // before next runs, so that next may override it
		}
		ctx := context.WithValue(r.Context(), userKey{}, u)
		if rp.cfg.KeepTokens {
			w, ctx = rp.withTokens(ctx, w, r, u)
		}
		next.ServeHTTP(w, r.WithContext(ctx))
		return
	}
	if !isNavigation(r) {
		w.Header().Set("WWW-Authenticate", `OpenIDConnect realm="oidcrp"`)
		rp.fail(w, r, http.StatusUnauthorized, &AuthError{Reason: ReasonLoginRequired})
		return
	}
	rp.login(w, r, receivedTarget(r))
}

// Optional returns middleware that puts the signed-in user, if any, in the
// request context and always calls next. It also answers the callback path,
// Config.LogoutPath and misrouted authorization responses, as [RP.Require]
// does.
func (rp *RP) Optional(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { rp.optional(w, r, next) })
}

func (rp *RP) optional(w http.ResponseWriter, r *http.Request, next http.Handler) {
	if rp.serveOwn(w, r) {
		return
	}
	if u := rp.user(w, r); u != nil {
		ctx := context.WithValue(r.Context(), userKey{}, u)
		if rp.cfg.KeepTokens {
			w, ctx = rp.withTokens(ctx, w, r, u)
		}
		r = r.WithContext(ctx)
	}
	next.ServeHTTP(w, r)
}

// LoginHandler returns a handler that starts a login and, once signed in,
// returns the browser to the same-origin path in its "return_to" query
// parameter (default "/"). A browser already signed in goes to that path
// at once. It works at whatever path it is mounted; see
// [RP.CallbackHandler] and [RP.LogoutHandler] for the other two.
func (rp *RP) LoginHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		returnTo := r.URL.Query().Get("return_to")
		if rp.user(w, r) != nil {
			// Each login started adds a cookie to every request until it
			// completes: a signed-in user has no use for one.
			w.Header().Set("Cache-Control", "no-store")
			http.Redirect(w, r, safeReturnTo(returnTo), http.StatusSeeOther)
			return
		}
		rp.login(w, r, returnTo)
	})
}

// isNavigation reports whether r is a browser navigation, which can be
// redirected to the provider, rather than an API call or a sub-resource.
func isNavigation(r *http.Request) bool {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		return false
	}
	if mode := r.Header.Get("Sec-Fetch-Mode"); mode != "" {
		return mode == "navigate"
	}
	return strings.Contains(r.Header.Get("Accept"), "text/html")
}

// flowCookiePrefix names the per-attempt login cookies; the rest of the name
// is taken from the state, so parallel logins in several tabs do not collide.
const (
	flowCookiePrefix = "oidcrp_login_"
	flowLifetime     = 10 * time.Minute
)

// flow is the state of one login attempt, sealed into a cookie bound to the
// browser. The cookie carries only what cannot be derived (see
// flow.encode): up to maxPendingLogins of them travel with every request
// while logins are pending.
type flow struct {
	seed     [32]byte // the attempt's secret; State, Nonce and Verifier derive from it
	State    string
	Nonce    string
	Verifier string
	Issuer   string  // set once the cookie is found to be this RP's issuer's
	client   [8]byte // tag of the client_id the login was started with
	issuer   [8]byte // tag of the issuer
	ReturnTo string
	Created  int64
	Retried  bool // this attempt restarts one the provider rejected
	DPoP     bool // the tokens are bound to the attempt's DPoP key (dpopKey)
}

// newFlow returns an attempt whose state, nonce and PKCE verifier derive
// from seed, each 256 bits of SHA-256 output (43 characters).
func newFlow(seed [32]byte) flow {
	f := flow{seed: seed}
	f.State, f.Nonce, f.Verifier = f.derive("state"), f.derive("nonce"), f.derive("pkce")
	return f
}

// dpopKey returns the attempt's DPoP key, derived from its seed.
func (f *flow) dpopKey() *dpopKey { return dpopKeyFromSeed(f.seed[:]) }

func (f *flow) derive(label string) string {
	h := sha256.New()
	h.Write([]byte("oidcrp login\x00" + label + "\x00"))
	h.Write(f.seed[:])
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil))
}

// tag is a short digest of a value a login cookie need not carry whole.
func tag(kind, value string) (t [8]byte) {
	sum := sha256.Sum256([]byte("oidcrp login\x00" + kind + "\x00" + value))
	copy(t[:], sum[:])
	return t
}

// madeFor reports whether the attempt was started with clientID.
func (f *flow) madeFor(clientID string) bool { return f.client == tag("client", clientID) }

// flowVersion is the first byte of an encoded flow.
const flowVersion = 1

// encode lays the attempt out in binary: version, flags, seed, issuer and
// client tags, creation time, then the return path (about 60 bytes and the
// path, against some 250 and the path as JSON with the derived values).
func (f *flow) encode() []byte {
	b := make([]byte, 0, 58+len(f.ReturnTo))
	var flags byte
	if f.Retried {
		flags |= 1
	}
	if f.DPoP {
		flags |= 2
	}
	b = append(b, flowVersion, flags)
	b = append(b, f.seed[:]...)
	b = append(b, f.issuer[:]...)
	b = append(b, f.client[:]...)
	b = binary.BigEndian.AppendUint64(b, uint64(f.Created))
	return append(b, f.ReturnTo...)
}

func decodeFlow(b []byte) (*flow, error) {
	if len(b) < 58 || b[0] != flowVersion {
		return nil, errors.New("malformed login cookie")
	}
	f := newFlow([32]byte(b[2:34]))
	f.Retried, f.DPoP = b[1]&1 != 0, b[1]&2 != 0
	f.issuer, f.client = [8]byte(b[34:42]), [8]byte(b[42:50])
	f.Created = int64(binary.BigEndian.Uint64(b[50:58]))
	f.ReturnTo = string(b[58:])
	return &f, nil
}

func flowCookieName(state string) string {
	return flowCookiePrefix + state[:16]
}

// hostPrefix is the cookie name prefix (RFC 6265bis §4.1.3.2) that browsers
// accept only from a secure origin, for the host itself (no Domain) and
// Path "/": no sibling subdomain, and no attacker answering a plain-http
// request, can set or overwrite such a cookie.
const hostPrefix = "__Host-"

// hostCookieName prefixes name with __Host- when cookies are Secure.
func hostCookieName(name string, secure bool) string {
	if !secure || strings.HasPrefix(name, hostPrefix) {
		return name
	}
	return hostPrefix + name
}

// loginCookieName names the cookie of the attempt with this state.
func (rp *RP) loginCookieName(state string) string {
	return hostCookieName(flowCookieName(state), rp.secure)
}

// login redirects the browser to the provider's authorization endpoint.
func (rp *RP) login(w http.ResponseWriter, r *http.Request, returnTo string) {
	rp.loginAttempt(w, r, safeReturnTo(returnTo), false)
}

func (rp *RP) loginAttempt(w http.ResponseWriter, r *http.Request, returnTo string, retried bool) {
	ctx, end := rp.trace.span(r.Context(), opLoginStart, rp.clientID())
	err := rp.startLogin(ctx, w, r, returnTo, retried)
	end(err)
	if err != nil {
		rp.logRefused("oidcrp: cannot start login", err)
		rp.fail(w, r, loginStartStatus(err), err)
	}
}

func (rp *RP) startLogin(ctx context.Context, w http.ResponseWriter, r *http.Request, returnTo string, retried bool) error {
	c, err := rp.lc.client(ctx)
	if err != nil {
		return err
	}
	s, err := rp.keys.sealer(ctx)
	if err != nil {
		return err
	}
	live, stale := rp.pendingLogins(r, s)
	if !retried && (rp.loginsLost() || len(live) > 0) {
		// Logins never came back (this browser's, or every browser's for a
		// while): maybe the provider refused them because it forgot this
		// client, after a restart say. Check before sending another.
		rp.lc.rejected(ctx, c, nil)
		if c, err = rp.lc.client(ctx); err != nil {
			return err
		}
	}
	// Make room, if need be: first cookies that do not open here (expired,
	// forged, another tenant's), then the oldest abandoned attempts.
	for i, n := 0, len(stale)+len(live); n >= maxPendingLogins; i, n = i+1, n-1 {
		name := ""
		if i < len(stale) {
			name = stale[i]
		} else {
			name = live[i-len(stale)].name
		}
		http.SetCookie(w, rp.cookie(name, "", "/", time.Time{}))
	}
	var seed [32]byte
	rand.Read(seed[:])
	f := newFlow(seed)
	f.ReturnTo, f.Created, f.Retried = carriedReturnTo(returnTo), rp.now().Unix(), retried
	target, c, err := rp.authorizationURL(ctx, c, &f) // pushes the request first with PAR (par.go)
	if err != nil {
		return err
	}
	f.issuer, f.client = tag("issuer", rp.cfg.Issuer), tag("client", c.creds.ClientID)
	name := rp.loginCookieName(f.State)
	http.SetCookie(w, rp.cookie(name, s.seal("login", rp.bind(name), f.encode()), "/", rp.now().Add(flowLifetime)))
	rp.log.Debug("oidcrp: login started", "client_id", c.creds.ClientID)
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, target, http.StatusFound)
	return nil
}

func oidcNonce(nonce string) oauth2.AuthCodeOption { return oauth2.SetAuthURLParam("nonce", nonce) }

// loginLostAfter is how long after a login started with none completed
// since the relying party suspects the provider refuses its client.
const loginLostAfter = 5 * time.Second

// loginsLost notes that a login starts, and reports whether one started
// more than loginLostAfter ago without any login completing since. A
// suspicion is reported once: the clock restarts with this login.
func (rp *RP) loginsLost() bool {
	now := rp.now().UnixNano()
	first := rp.unanswered.Load()
	if first == 0 {
		rp.unanswered.CompareAndSwap(0, now)
		return false
	}
	return time.Duration(now-first) > loginLostAfter && rp.unanswered.CompareAndSwap(first, now)
}

// pendingLogin is a login cookie of the request that opens and has not
// expired.
type pendingLogin struct {
	name    string
	created int64
}

// maxExamined bounds the login cookies of one request that are opened.
const maxExamined = 2 * maxPendingLogins

// pendingLogins returns the request's login cookies that open and have not
// expired, oldest first, and the names of those that do not. Anyone can
// send a cookie with a login cookie's name: only one this RP sealed counts
// as a login in progress.
func (rp *RP) pendingLogins(r *http.Request, s *sealer) (live []pendingLogin, stale []string) {
	prefix := hostCookieName(flowCookiePrefix, rp.secure)
	now := rp.now()
	for _, c := range r.Cookies() {
		if !strings.HasPrefix(c.Name, prefix) || len(live)+len(stale) >= maxExamined {
			continue
		}
		pt, err := s.open("login", rp.bind(c.Name), c.Value)
		var f *flow
		if err == nil {
			f, err = decodeFlow(pt)
		}
		if err != nil || now.Sub(time.Unix(f.Created, 0)) > flowLifetime {
			stale = append(stale, c.Name)
			continue
		}
		live = append(live, pendingLogin{c.Name, f.Created})
	}
	slices.SortFunc(live, func(a, b pendingLogin) int { return cmp.Compare(a.created, b.created) })
	return live, stale
}

// randomString returns 256 random bits, base64url-encoded (43 characters).
func randomString() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// maxReturnTo bounds the path a login returns to.
const maxReturnTo = 1024

// maxCarriedReturnTo bounds the return path a login cookie carries: with
// maxPendingLogins of them and a session cookie, the Cookie header stays
// well under the 8 KB that common servers accept.
const maxCarriedReturnTo = 512

// carriedReturnTo returns the part of a safe return path that a login
// cookie carries: all of it when short enough, else its path without the
// query, else "/".
func carriedReturnTo(p string) string {
	if len(p) <= maxCarriedReturnTo {
		return p
	}
	if i := strings.IndexByte(p, '?'); i > 0 && i <= maxCarriedReturnTo {
		return p[:i]
	}
	return "/"
}

// maxPendingLogins bounds the login cookies a browser holds at once: more
// would swell every request's Cookie header.
const maxPendingLogins = 4

// safeReturnTo returns target if it is a path on this origin, and "/"
// otherwise: no scheme, no host, no "//" or "/\" that a browser would read
// as another host, no control characters.
func safeReturnTo(target string) string {
	if target == "" || target[0] != '/' || len(target) > maxReturnTo {
		return "/"
	}
	if len(target) > 1 && (target[1] == '/' || target[1] == '\\') {
		return "/"
	}
	for i := 0; i < len(target); i++ {
		if c := target[i]; c < 0x20 || c == 0x7f || c == '\\' {
			return "/"
		}
	}
	u, err := url.Parse(target)
	if err != nil || u.Scheme != "" || u.Host != "" || u.User != nil || !strings.HasPrefix(u.Path, "/") || strings.HasPrefix(u.Path, "//") {
		return "/"
	}
	return target
}

// Shared header values: full slices (len == cap), so that a handler's Add
// copies them rather than writing into them.
var (
	noStoreValue = []string{"no-store"}
	varyCookie   = []string{"Cookie"}
)

// noStore sets "Cache-Control: no-store" and adds "Vary: Cookie" without
// allocating on the authenticated path.
func noStore(h http.Header) {
	h["Cache-Control"] = noStoreValue
	if v, ok := h["Vary"]; !ok {
		h["Vary"] = varyCookie
	} else if !slices.Contains(v, "Cookie") {
		h["Vary"] = append(v[:len(v):len(v)], "Cookie")
	}
}
