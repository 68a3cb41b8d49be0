package oidcrp

import (
	"context"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
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
		next.ServeHTTP(w, r.WithContext(context.WithValue(r.Context(), userKey{}, u)))
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
		r = r.WithContext(context.WithValue(r.Context(), userKey{}, u))
	}
	next.ServeHTTP(w, r)
}

// LoginHandler returns a handler that starts a login and, once signed in,
// returns the browser to the same-origin path in its "return_to" query
// parameter (default "/"). It works at whatever path it is mounted; see
// [RP.CallbackHandler] and [RP.LogoutHandler] for the other two.
func (rp *RP) LoginHandler() http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rp.login(w, r, r.URL.Query().Get("return_to"))
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
// browser.
type flow struct {
	State    string `json:"s"`
	Nonce    string `json:"n"`
	Verifier string `json:"v"`
	Issuer   string `json:"i"`
	ClientID string `json:"c"`
	ReturnTo string `json:"r"`
	Created  int64  `json:"t"`
	Retried  bool   `json:"x,omitempty"` // this attempt restarts one the provider rejected
}

func flowCookieName(state string) string {
	return flowCookiePrefix + state[:16]
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
		rp.fail(w, r, http.StatusServiceUnavailable, err)
	}
}

func (rp *RP) startLogin(ctx context.Context, w http.ResponseWriter, r *http.Request, returnTo string, retried bool) error {
	c, err := rp.lc.client(ctx)
	if err == nil && !retried && (rp.loginsLost() || len(pendingLogins(r)) > 0) {
		// Logins never came back (this browser's, or every browser's for a
		// while): maybe the provider refused them because it forgot this
		// client, after a restart say. Check before sending another.
		rp.lc.rejected(ctx, c, nil)
		c, err = rp.lc.client(ctx)
	}
	if err != nil {
		return err
	}
	s, err := rp.keys.sealer(ctx)
	if err != nil {
		return err
	}
	f := flow{
		State: randomString(), Nonce: randomString(), Verifier: oauth2.GenerateVerifier(),
		Issuer: rp.cfg.Issuer, ClientID: c.creds.ClientID, ReturnTo: returnTo, Created: rp.now().Unix(), Retried: retried,
	}
	b, _ := json.Marshal(f)
	if pending := pendingLogins(r); len(pending) >= maxPendingLogins {
		for _, old := range pending { // abandoned attempts: make room
			http.SetCookie(w, rp.cookie(old, "", "/", time.Time{}))
		}
	}
	name := flowCookieName(f.State)
	http.SetCookie(w, rp.cookie(name, s.seal("login", rp.bind(name), b), "/", rp.now().Add(flowLifetime)))
	target := c.oauth.AuthCodeURL(f.State, oidcNonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier))
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

// pendingLogins returns the names of the request's login cookies.
func pendingLogins(r *http.Request) []string {
	var names []string
	for _, c := range r.Cookies() {
		if strings.HasPrefix(c.Name, flowCookiePrefix) {
			names = append(names, c.Name)
		}
	}
	return names
}

// randomString returns 256 random bits, base64url-encoded (43 characters).
func randomString() string {
	b := make([]byte, 32)
	rand.Read(b)
	return base64.RawURLEncoding.EncodeToString(b)
}

// maxReturnTo bounds the path a login returns to, which its cookie carries.
const maxReturnTo = 1024

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
