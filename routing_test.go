package oidcrp

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/http/httputil"
	"net/url"
	"strings"
	"testing"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// walked is where a browser navigation ended after following redirects.
type walked struct {
	status     int
	body       string
	url        *url.URL // the last request's URL, as the browser sees it
	toProvider int      // redirects to the provider's authorization endpoint
}

// walk sends req from the test browser and follows up to 30 redirects, as a
// browser would, counting those to the authorization endpoint.
func (e *testEnv) walk(req *http.Request) walked {
	e.t.Helper()
	authorize := e.op.Issuer() + "/authorize"
	var w walked
	for hop := 0; ; hop++ {
		req.Header.Set("Accept", html)
		resp, err := e.browser.Do(req)
		if err != nil {
			e.t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		w.status, w.body, w.url = resp.StatusCode, string(b), req.URL
		if resp.StatusCode < 300 || resp.StatusCode >= 400 {
			return w
		}
		if hop == 30 {
			e.t.Fatalf("still redirecting after %d hops (%d to the provider); logs:\n%s", hop, w.toProvider, e.logs)
		}
		next, err := req.URL.Parse(resp.Header.Get("Location"))
		if err != nil {
			e.t.Fatal(err)
		}
		if strings.HasPrefix(next.String(), authorize) {
			w.toProvider++
		}
		req, _ = http.NewRequest(http.MethodGet, next.String(), nil)
	}
}

func (e *testEnv) walkGet(rawURL string) walked {
	req, _ := http.NewRequest(http.MethodGet, rawURL, nil)
	return e.walk(req)
}

// whoami is an application page: the signed-in subject and the request
// target as the page sees it.
func whoami(w http.ResponseWriter, r *http.Request) {
	u, ok := UserFromContext(r.Context())
	if !ok {
		http.Error(w, "no user in context", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"sub": u.Subject, "seen": r.URL.RequestURI()})
}

// assertSignedIn checks that a walk ended signed in on the page the browser
// asked for (browserPath), which saw itself at seenPath, after exactly one
// trip to the provider.
func (e *testEnv) assertSignedIn(w walked, browserPath, seenPath string) {
	e.t.Helper()
	if w.toProvider != 1 {
		e.t.Errorf("%d redirects to the authorization endpoint, want 1", w.toProvider)
	}
	var got struct{ Sub, Seen string }
	if w.status != http.StatusOK || json.Unmarshal([]byte(w.body), &got) != nil || got.Sub != "demo-user" {
		e.t.Fatalf("login ended at %s with %d: %s\nlogs:\n%s", w.url, w.status, w.body, e.logs)
	}
	if w.url.RequestURI() != browserPath || got.Seen != seenPath {
		e.t.Errorf("login ended at %s (page saw %s), want %s (%s)", w.url.RequestURI(), got.Seen, browserPath, seenPath)
	}
}

// assertLogout signs out with a same-origin POST to logoutURL and checks
// that the browser ends on the signed-out page at that URL, with the
// provider's state recognised, and without a session.
func (e *testEnv) assertLogout(origin, logoutURL, protectedURL string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, logoutURL, nil)
	req.Header.Set("Origin", origin)
	w := e.walk(req)
	if w.status != http.StatusOK || !strings.Contains(w.body, "signed out") || w.url.Path != strings.TrimPrefix(logoutURL, origin) {
		e.t.Fatalf("logout ended at %s with %d: %s", w.url, w.status, w.body)
	}
	if s := e.op.Stats(); s.EndSession != 1 {
		e.t.Errorf("end_session calls: %d, want 1", s.EndSession)
	}
	if strings.Contains(e.logs.String(), "unknown state") {
		e.t.Error("the post-logout state was not recognised (logout cookie path?)")
	}
	resp := e.get(protectedURL, "")
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		e.t.Errorf("after logout %s answered %d, want 401", protectedURL, resp.StatusCode)
	}
}

func TestMountAtRoot(t *testing.T) {
	e := newEnv(t, devop.Options{}, Config{})
	e.app.Config.Handler = e.rp.Require(http.HandlerFunc(whoami))
	e.assertSignedIn(e.walkGet(e.app.URL+"/page?x=1"), "/page?x=1", "/page?x=1")
	e.assertLogout(e.app.URL, e.app.URL+"/logout", e.app.URL+"/page")
}

// The application lives under /app/ behind http.StripPrefix: the handlers
// see /page and /auth/callback, the server received /app/page and
// /app/auth/callback.
func TestMountStripPrefix(t *testing.T) {
	e := newEnv(t, devop.Options{}, Config{})
	e.rp = e.newRP(Config{RedirectURL: e.app.URL + "/app/auth/callback", LogoutPath: "/app/logout"})
	mux := http.NewServeMux()
	mux.Handle("/app/", http.StripPrefix("/app", e.rp.Require(http.HandlerFunc(whoami))))
	e.app.Config.Handler = mux
	e.assertSignedIn(e.walkGet(e.app.URL+"/app/page?x=1"), "/app/page?x=1", "/page?x=1")
	if strings.Contains(e.logs.String(), "arrived at") {
		t.Errorf("the callback was reported misrouted:\n%s", e.logs)
	}
	e.assertLogout(e.app.URL, e.app.URL+"/app/logout", e.app.URL+"/app/page")
}

// The RP as a handler for its own paths under /auth/, part of the
// application protected, the rest optional.
func TestMountRPHandler(t *testing.T) {
	e := newEnv(t, devop.Options{}, Config{})
	e.rp = e.newRP(Config{LogoutPath: "/auth/logout"})
	mux := http.NewServeMux()
	mux.Handle("/auth/", e.rp)
	mux.Handle("/admin/", e.rp.Require(http.HandlerFunc(whoami)))
	mux.Handle("/", e.rp.Optional(http.NotFoundHandler()))
	e.app.Config.Handler = mux
	e.assertSignedIn(e.walkGet(e.app.URL+"/admin/x"), "/admin/x", "/admin/x")
	e.assertLogout(e.app.URL, e.app.URL+"/auth/logout", e.app.URL+"/admin/x")

	// The same under http.StripPrefix: the RP sees /callback and /logout.
	e2 := newEnv(t, devop.Options{}, Config{})
	e2.rp = e2.newRP(Config{LogoutPath: "/auth/logout"})
	mux = http.NewServeMux()
	mux.Handle("/auth/", http.StripPrefix("/auth", e2.rp))
	mux.Handle("/admin/", e2.rp.Require(http.HandlerFunc(whoami)))
	e2.app.Config.Handler = mux
	e2.assertSignedIn(e2.walkGet(e2.app.URL+"/admin/x"), "/admin/x", "/admin/x")
	e2.assertLogout(e2.app.URL, e2.app.URL+"/auth/logout", e2.app.URL+"/admin/x")
}

// Go 1.22 ServeMux patterns, each path routed to its own handler.
func TestMountServeMuxPatterns(t *testing.T) {
	e := newEnv(t, devop.Options{}, Config{})
	mux := http.NewServeMux()
	mux.Handle("GET /auth/callback", e.rp.CallbackHandler())
	mux.Handle("/logout", e.rp.LogoutHandler())
	mux.Handle("GET /login", e.rp.LoginHandler())
	mux.Handle("GET /me", e.rp.Require(http.HandlerFunc(whoami)))
	e.app.Config.Handler = mux
	e.assertSignedIn(e.walkGet(e.app.URL+"/me?x=1"), "/me?x=1", "/me?x=1")
	e.assertLogout(e.app.URL, e.app.URL+"/logout", e.app.URL+"/me")

	e.op.EndSessions()
	e.assertSignedIn(e.walkGet(e.app.URL+"/login?return_to=/me%3Fy%3D2"), "/me?y=2", "/me?y=2")
}

// A reverse proxy serves the application at /app/ and forwards /app/X as
// /X: neither r.URL.Path nor r.RequestURI holds the path the browser used.
func TestMountBehindPathRewritingProxy(t *testing.T) {
	for _, tc := range []struct {
		name     string
		explicit bool // the callback is routed to CallbackHandler
	}{{"middleware only", false}, {"CallbackHandler", true}} {
		t.Run(tc.name, func(t *testing.T) {
			front := newTLSServer(http.NotFoundHandler())
			t.Cleanup(front.Close)
			e := newEnv(t, devop.Options{}, Config{})
			e.rp = e.newRP(Config{RedirectURL: front.URL + "/app/auth/callback", LogoutPath: "/app/logout"})
			mux := http.NewServeMux()
			if tc.explicit {
				mux.Handle("GET /auth/callback", e.rp.CallbackHandler())
			}
			mux.Handle("/logout", e.rp.LogoutHandler())
			mux.Handle("/", e.rp.Require(http.HandlerFunc(whoami)))
			e.app.Config.Handler = mux
			backend, _ := url.Parse(e.app.URL)
			front.Config.Handler = &httputil.ReverseProxy{
				Rewrite: func(pr *httputil.ProxyRequest) {
					pr.SetURL(backend)
					pr.Out.URL.Path = strings.TrimPrefix(pr.In.URL.Path, "/app")
					pr.Out.URL.RawPath = ""
					pr.Out.Host = pr.In.Host
				},
				Transport: e.app.Client().Transport,
			}

			e.assertSignedIn(e.walkGet(front.URL+"/app/page?x=1"), "/app/page?x=1", "/page?x=1")
			warned := strings.Contains(e.logs.String(), "the callback for RedirectURL path /app/auth/callback arrived at /auth/callback")
			if warned == tc.explicit {
				t.Errorf("misrouted callback warning logged: %v, want %v\nlogs:\n%s", warned, !tc.explicit, e.logs)
			}
			e.assertLogout(front.URL, front.URL+"/app/logout", front.URL+"/app/page")
		})
	}
}

// The loop this guards against: a callback routed to a path the middleware
// does not know as its own was taken for a page needing a login, which sent
// the browser back to the provider, which sent it back to the callback.
func TestMisroutedCallbackNeverStartsALogin(t *testing.T) {
	e := newEnv(t, devop.Options{}, Config{})
	e.rp = e.newRP(Config{RedirectURL: e.app.URL + "/somewhere/else"})
	mux := http.NewServeMux()
	mux.Handle("/", e.rp.Require(http.HandlerFunc(whoami)))
	// Whatever the provider sends to /somewhere/else arrives at /auth/cb.
	e.app.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/somewhere/else" {
			r.URL.Path = "/auth/cb"
			r.RequestURI = r.URL.RequestURI()
		}
		mux.ServeHTTP(w, r)
	})
	e.assertSignedIn(e.walkGet(e.app.URL+"/page"), "/page", "/page")
	if !strings.Contains(e.logs.String(), "arrived at /auth/cb") {
		t.Errorf("no warning names the paths:\n%s", e.logs)
	}

	// An error response from the provider, misrouted, fails once.
	e.browser.Jar, _ = cookiejar.New(nil)
	resp := e.get(e.app.URL+"/other", html)
	resp.Body.Close()
	auth, _ := url.Parse(resp.Header.Get("Location"))
	state := auth.Query().Get("state")
	q := url.Values{"error": {"access_denied"}, "state": {state}, "iss": {e.op.Issuer()}}
	w := e.walkGet(e.app.URL + "/auth/cb?" + q.Encode())
	if w.status != http.StatusForbidden || !strings.Contains(w.body, "cancelled") || w.toProvider != 0 {
		t.Fatalf("misrouted error response: %d after %d trips to the provider: %s", w.status, w.toProvider, w.body)
	}
}

// A page's own state and code parameters are not an authorization response
// without the login cookie named after that state.
func TestPageWithStateAndCodeIsNotACallback(t *testing.T) {
	e := newEnv(t, devop.Options{}, Config{})
	e.app.Config.Handler = e.rp.Require(http.HandlerFunc(whoami))
	target := "/page?code=1&state=" + strings.Repeat("a", 43)
	e.assertSignedIn(e.walkGet(e.app.URL+target), target, target)
	if strings.Contains(e.logs.String(), "arrived at") {
		t.Errorf("a page was taken for a callback:\n%s", e.logs)
	}
}

func TestReturnPathUnderStrippedPrefix(t *testing.T) {
	rp, err := New(Config{Issuer: "https://op.example", RedirectURL: "https://app.example/app/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct{ arrived, returnTo, want string }{
		{"/app/auth/callback", "/page", "/page"},         // arrived whole: nothing stripped
		{"/auth/callback", "/page?x=1", "/app/page?x=1"}, // a proxy stripped /app
		{"/auth/callback", "/", "/app/"},
		{"/auth/callback", "/app/page", "/app/page"}, // already under the prefix
		{"/auth/callback", "/app?q", "/app?q"},
		{"/callback", "/page", "/app/auth/page"},
		{"/other/callback", "/page", "/page"}, // not a suffix: unknown
		{"/auth/callback", "//evil.example", "/app/"},
	} {
		r := httptest.NewRequest(http.MethodGet, tc.arrived+"?code=c", nil)
		if got := rp.returnPath(r, tc.returnTo); got != tc.want {
			t.Errorf("arrived at %s, return to %s: got %s, want %s", tc.arrived, tc.returnTo, got, tc.want)
		}
	}
}

func TestReceivedPath(t *testing.T) {
	for uri, want := range map[string]string{
		"":                            "",
		"*":                           "",
		"/a/b":                        "/a/b",
		"/a/b?x=/c":                   "/a/b",
		"/a%2Fb/c%20d?x":              "/a/b/c d",
		"https://h.example/a/b?x=1":   "/a/b",
		"https://h.example?x=/a":      "",
		"https://h.example#/a":        "",
		"https://u@h.example/a%20b":   "/a b",
		"http://h.example:8080/a?b#c": "/a",
		"h.example:443":               "",
	} {
		r := &http.Request{RequestURI: uri}
		if got := receivedPath(r); got != want {
			t.Errorf("receivedPath(%q) = %q, want %q", uri, got, want)
		}
	}
}
