package oidcrp

import (
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/gorilla/sessions"
	"github.com/oidcrp/oidcrp/internal/devop"
)

// cookieHeader returns the Cookie header the browser sends to the
// application.
func (e *testEnv) cookieHeader() string {
	u, _ := url.Parse(e.app.URL)
	var parts []string
	for _, c := range e.browser.Jar.Cookies(u) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// loginCookies counts the browser's login cookies.
func (e *testEnv) loginCookies() int {
	u, _ := url.Parse(e.app.URL)
	n := 0
	for _, c := range e.browser.Jar.Cookies(u) {
		if strings.Contains(c.Name, flowCookiePrefix) {
			n++
		}
	}
	return n
}

// checkHostCookie checks that c may carry the __Host- prefix: Secure, Path
// "/", no Domain (RFC 6265bis §4.1.3.2).
func checkHostCookie(t *testing.T, what string, c *http.Cookie) {
	t.Helper()
	switch {
	case c == nil:
		t.Errorf("%s: no cookie", what)
	case !strings.HasPrefix(c.Name, "__Host-"):
		t.Errorf("%s: cookie %q lacks the __Host- prefix", what, c.Name)
	case !c.Secure || c.Path != "/" || c.Domain != "":
		t.Errorf("%s: cookie %q: Secure=%v Path=%q Domain=%q", what, c.Name, c.Secure, c.Path, c.Domain)
	}
}

// setCookiePrefixed returns the first cookie resp sets whose name contains
// part.
func setCookiePrefixed(resp *http.Response, part string) *http.Cookie {
	for _, c := range resp.Cookies() {
		if strings.Contains(c.Name, part) {
			return c
		}
	}
	return nil
}

// TestSecureCookiesAreHostPrefixed: over https, the session, login and
// logout cookies carry the __Host- prefix, so that no sibling subdomain and
// no plain-http attacker can set them.
func TestSecureCookiesAreHostPrefixed(t *testing.T) {
	t.Parallel()
	t.Run("sealed", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, devop.Options{}, Config{})
		hops := e.follow(e.get(e.app.URL+"/", html))
		checkHostCookie(t, "login", setCookiePrefixed(hops[0], flowCookiePrefix))
		var sess *http.Cookie
		for _, h := range hops {
			if c := setCookieNamed(h, e.rp.cfg.SessionName); c != nil {
				sess = c
			}
		}
		checkHostCookie(t, "session", sess)
		if hops[len(hops)-1].StatusCode != http.StatusOK {
			t.Fatalf("login ended with %d", hops[len(hops)-1].StatusCode)
		}
		resp := e.postLogout()
		checkHostCookie(t, "logout", setCookiePrefixed(resp, "logout"))
		if resp.StatusCode != http.StatusSeeOther || !strings.HasPrefix(resp.Header.Get("Location"), e.op.Issuer()) {
			t.Fatalf("logout: %d %s", resp.StatusCode, resp.Header.Get("Location"))
		}
		// The provider sends the browser back: the state is checked against
		// the logout cookie, which is then deleted.
		back := e.follow(e.get(resp.Header.Get("Location"), html))
		if last := back[len(back)-1]; last.StatusCode != http.StatusOK {
			t.Fatalf("back from the provider's logout: %d", last.StatusCode)
		}
		if strings.Contains(e.logs.String(), "unknown state") {
			t.Errorf("the logout cookie was not found on the way back:\n%s", e.logs)
		}
		if c := e.cookie("__Host-oidcrp_logout"); c != nil {
			t.Errorf("logout cookie left behind")
		}
	})
	t.Run("server-side", func(t *testing.T) {
		t.Parallel()
		store := sessions.NewFilesystemStore(t.TempDir(), []byte("0123456789abcdef0123456789abcdef"))
		store.Options.Domain, store.Options.Path = "example.com", "/app" // what __Host- forbids
		e := newEnv(t, devop.Options{}, Config{SessionStore: store})
		hops := e.follow(e.get(e.app.URL+"/", html))
		var sess *http.Cookie
		for _, h := range hops {
			if c := setCookieNamed(h, e.rp.cfg.SessionName); c != nil {
				sess = c
			}
		}
		checkHostCookie(t, "server-side session", sess)
		if hops[len(hops)-1].StatusCode != http.StatusOK {
			t.Fatalf("login ended with %d", hops[len(hops)-1].StatusCode)
		}
	})
	t.Run("plain http", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, devop.Options{}, Config{})
		rp := e.newRP(Config{RedirectURL: "http://127.0.0.1:9/auth/callback"})
		req := httptest.NewRequest(http.MethodGet, "http://127.0.0.1:9/", nil)
		req.Header.Set("Accept", html)
		w := httptest.NewRecorder()
		rp.Require(http.NotFoundHandler()).ServeHTTP(w, req)
		c := setCookiePrefixed(w.Result(), flowCookiePrefix)
		if w.Code != http.StatusFound || c == nil || strings.HasPrefix(c.Name, "__Host-") || c.Secure {
			t.Errorf("login over plain http: %d, cookie %+v", w.Code, c)
		}
		if rp.cfg.SessionName != "oidcrp" {
			t.Errorf("session cookie over plain http: %q", rp.cfg.SessionName)
		}
	})
}

// TestPlantedLoginCookieRefused: an attacker who can set cookies for the
// application's host (from a sibling subdomain, or by answering a plain-http
// request) starts a login as themselves, stops before the callback, plants
// their login cookie in the victim's browser and sends the victim to the
// callback with their code: the victim must not be signed into the
// attacker's account. A cookie set that way cannot carry the __Host- prefix.
func TestPlantedLoginCookieRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	// The attacker's browser, up to the callback.
	start := e.get(e.app.URL+"/", html)
	start.Body.Close()
	login := setCookiePrefixed(start, flowCookiePrefix)
	atOP := e.get(start.Header.Get("Location"), html)
	atOP.Body.Close()
	callback := atOP.Header.Get("Location")
	if login == nil || !strings.Contains(callback, "code=") {
		t.Fatalf("attacker's login: cookie %v, callback %q", login, callback)
	}
	// The victim's browser, with the planted cookie: the name a cookie set
	// from elsewhere can have.
	e.browser.Jar, _ = cookiejar.New(nil)
	u, _ := url.Parse(e.app.URL)
	planted := strings.TrimPrefix(login.Name, "__Host-")
	e.browser.Jar.SetCookies(u, []*http.Cookie{{Name: planted, Value: login.Value, Path: "/"}})
	hops := e.follow(e.get(callback, html))
	if e.sessionCookie() != nil || e.handled.Load() != 0 {
		t.Fatalf("the planted login cookie signed the victim in (%d)", hops[len(hops)-1].StatusCode)
	}
	if n := e.op.Stats().Token; n != 0 {
		t.Errorf("the attacker's code was redeemed (%d token requests)", n)
	}
}

// TestForgedLoginCookieTriggersNoRegistrationRead: only a login cookie that
// authenticates counts as a login that never came back; anyone can send a
// cookie with the login cookies' name, and each would otherwise cost an
// RFC 7592 read at the provider.
func TestForgedLoginCookieTriggersNoRegistrationRead(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	e.login("/")
	before := e.op.Stats().RegistrationRead
	for i := range 3 {
		e.browser.Jar, _ = cookiejar.New(nil)
		u, _ := url.Parse(e.app.URL)
		name := flowCookiePrefix + fmt.Sprintf("forged%010d", i)
		e.browser.Jar.SetCookies(u, []*http.Cookie{
			{Name: name, Value: "forged", Path: "/"},
			{Name: "__Host-" + name, Value: "forged", Path: "/", Secure: true},
		})
		resp := e.get(e.app.URL+"/", html)
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("navigation with a forged login cookie: %d", resp.StatusCode)
		}
	}
	if n := e.op.Stats().RegistrationRead - before; n != 0 {
		t.Errorf("forged login cookies caused %d RFC 7592 reads", n)
	}
}

// returnPath is a same-origin path and query of n bytes.
func returnPath(prefix string, n int) string {
	return prefix + "?q=" + strings.Repeat("x", n-len(prefix)-3)
}

// longestReturnPath is a return path of the greatest length a login
// accepts; the longest one its cookie carries whole is maxCarriedReturnTo.
func longestReturnPath(prefix string) string { return returnPath(prefix, maxReturnTo) }

// TestCookieHeaderStaysSmall: with the most pending logins a browser can
// hold, each returning to the longest path, and a session, the Cookie
// header stays well under the 8 KB that nginx and Apache accept by default.
func TestCookieHeaderStaysSmall(t *testing.T) {
	t.Parallel()
	const limit = 6 << 10
	claims := benchClaims()
	delete(claims, "exp")
	delete(claims, "iss")
	e := newEnv(t, devop.Options{Claims: claims}, Config{})
	check := func(when string) {
		t.Helper()
		if n := len(e.cookieHeader()); n > limit {
			t.Errorf("%s: Cookie header of %d bytes (%d login cookies), want ≤ %d", when, n, e.loginCookies(), limit)
		}
	}
	// Signed out: logins started in several tabs and abandoned, returning
	// to the longest paths, and to the longest their cookies carry whole.
	for i := range maxPendingLogins + 2 {
		p := returnPath(fmt.Sprintf("/tab%d", i), maxCarriedReturnTo)
		if i%2 == 1 {
			p = longestReturnPath(fmt.Sprintf("/tab%d", i))
		}
		if safeReturnTo(p) != p {
			t.Fatalf("return path of %d bytes refused", len(p))
		}
		resp := e.get(e.app.URL+p, html)
		resp.Body.Close()
		if resp.StatusCode != http.StatusFound {
			t.Fatalf("tab %d: %d", i, resp.StatusCode)
		}
		check(fmt.Sprintf("after %d abandoned logins", i+1))
	}
	check("signed out")
	t.Logf("Cookie header signed out with %d pending logins: %d bytes", e.loginCookies(), len(e.cookieHeader()))
	// One of them completes.
	out := e.login(returnPath("/last", maxCarriedReturnTo))
	if p, _ := out["path"].(string); p != returnPath("/last", maxCarriedReturnTo) {
		t.Errorf("returned to %.40q…", p)
	}
	if e.sessionCookie() == nil || e.loginCookies() == 0 {
		t.Fatalf("after login: session %v, %d login cookies", e.sessionCookie() != nil, e.loginCookies())
	}
	check("signed in, with pending logins")
	// Signed in, the login handler starts no login: it returns the browser
	// to its page.
	tokens := e.op.Stats().Token
	pending := e.loginCookies()
	for range maxPendingLogins {
		target := longestReturnPath("/again")
		resp := e.get(e.app.URL+"/signin?return_to="+url.QueryEscape(target), html)
		resp.Body.Close()
		if resp.StatusCode/100 != 3 || resp.Header.Get("Location") != target {
			t.Fatalf("signed-in user at the login handler: %d to %.60q", resp.StatusCode, resp.Header.Get("Location"))
		}
	}
	if e.loginCookies() != pending || e.op.Stats().Token != tokens {
		t.Errorf("signed in, the login handler started logins: %d login cookies, was %d", e.loginCookies(), pending)
	}
	check("signed in, after the login handler")
	t.Logf("Cookie header signed in with %d pending logins: %d bytes", e.loginCookies(), len(e.cookieHeader()))
}

// TestLoginCookieEncoding: a login cookie round-trips, derives its state,
// nonce and verifier from its seed, and carries at most
// maxCarriedReturnTo bytes of return path.
func TestLoginCookieEncoding(t *testing.T) {
	t.Parallel()
	f := newFlow([32]byte{1, 2, 3})
	f.issuer, f.client = tag("issuer", "https://op.example"), tag("client", "c1")
	f.ReturnTo, f.Created, f.Retried = "/a?b=c", 1767225600, true
	g, err := decodeFlow(f.encode())
	if err != nil {
		t.Fatal(err)
	}
	if g.State != f.State || g.Nonce != f.Nonce || g.Verifier != f.Verifier || g.ReturnTo != f.ReturnTo ||
		g.Created != f.Created || !g.Retried || !g.madeFor("c1") || g.madeFor("c2") || g.issuer != f.issuer {
		t.Errorf("round trip: %+v, want %+v", g, f)
	}
	if len(f.State) != 43 || len(f.Verifier) != 43 || f.State == f.Nonce || f.Nonce == f.Verifier {
		t.Errorf("derived values: %q %q %q", f.State, f.Nonce, f.Verifier)
	}
	for _, b := range [][]byte{nil, f.encode()[:57], append([]byte{9}, f.encode()[1:]...)} {
		if _, err := decodeFlow(b); err == nil {
			t.Errorf("decoded %x", b)
		}
	}
	long := "/" + strings.Repeat("p", maxCarriedReturnTo)
	for in, want := range map[string]string{
		"/x?y=z":                  "/x?y=z",
		long[:maxCarriedReturnTo]: long[:maxCarriedReturnTo],
		"/x?" + long:              "/x",
		long + "?q":               "/",
	} {
		if got := carriedReturnTo(in); got != want {
			t.Errorf("carriedReturnTo(%.30q…) = %.30q…, want %.30q…", in, got, want)
		}
	}
}
