package oidcrp

import (
	"net/http"
	"net/url"
	"strings"
)

// CallbackHandler returns a handler that completes logins, for applications
// that route the callback themselves (a Go 1.22 pattern such as
// "GET /auth/callback", a chi or gorilla/mux route, a sub-router). It works
// at whatever path it is mounted, but the provider only ever sends the
// browser to Config.RedirectURL, the one redirect URI registered: mount it
// where requests for that URL arrive. Behind a proxy that rewrites paths
// (https://app.example.com/app/auth/callback forwarded as /auth/callback),
// that is the path the application receives; the browser then returns to
// the page it asked for under the prefix the proxy removed.
//
// The login is bound to the browser by its sealed login cookie (state, PKCE
// verifier, nonce), so the path it arrives at adds nothing to its checks.
func (rp *RP) CallbackHandler() http.Handler {
	return http.HandlerFunc(rp.handleCallback)
}

// LogoutHandler returns a handler that ends sessions, for applications that
// route Config.LogoutPath themselves: a same-origin POST ends the local
// session and, when the provider supports it, the provider's (RP-Initiated
// Logout); a GET shows a sign-out button, or the signed-out page when the
// provider sends the browser back.
//
// It works at whatever path it is mounted. The URLs it gives the browser
// (the sign-out form's action, the logout cookie's path, the page after
// logout) use Config.LogoutPath, and the provider returns the browser to
// Config.PostLogoutRedirectURL (by default LogoutPath on RedirectURL's
// origin): mount it where requests for those arrive. LogoutPath is the path
// as the browser sees it, which behind a path-rewriting proxy differs from
// the mount path.
func (rp *RP) LogoutHandler() http.Handler {
	return http.HandlerFunc(rp.handleLogout)
}

// receivedPath returns the path of the request target as the server
// received it: http.StripPrefix and sub-routers change r.URL.Path but keep
// r.RequestURI. It returns "" when that is unknown (a request made in
// process) or is not a path.
func receivedPath(r *http.Request) string {
	uri := r.RequestURI
	if uri == "" || uri == "*" {
		return ""
	}
	if uri[0] != '/' { // absolute-form: skip scheme and authority
		if i := strings.Index(uri, "://"); i > 0 {
			if j := strings.IndexAny(uri[i+3:], "/?#"); j >= 0 && uri[i+3+j] == '/' {
				uri = uri[i+3+j:]
			}
		}
	}
	if uri[0] == '/' {
		if i := strings.IndexByte(uri, '?'); i >= 0 {
			uri = uri[:i]
		}
		if strings.IndexByte(uri, '%') < 0 {
			return uri // nothing to decode: no need to parse and allocate
		}
	}
	u, err := url.ParseRequestURI(r.RequestURI)
	if err != nil || !strings.HasPrefix(u.Path, "/") {
		return ""
	}
	return u.Path
}

// atPath reports whether r is addressed to path, as the handler sees it or
// as the server received it (received, from receivedPath).
func atPath(r *http.Request, received, path string) bool {
	return r.URL.Path == path || received == path
}

// arrivedAt returns the path r arrived at, as the server received it when
// known.
func arrivedAt(r *http.Request) string {
	if p := receivedPath(r); p != "" {
		return p
	}
	return r.URL.Path
}

// receivedTarget returns the path and query to send the browser back to
// after a login started by r: the request target as the server received it
// (which http.StripPrefix keeps whole), else as the handler sees it.
func receivedTarget(r *http.Request) string {
	if strings.HasPrefix(r.RequestURI, "/") {
		return r.RequestURI
	}
	if r.RequestURI != "" {
		if u, err := url.ParseRequestURI(r.RequestURI); err == nil && strings.HasPrefix(u.Path, "/") {
			return u.RequestURI() // absolute-form target
		}
	}
	return r.URL.RequestURI()
}

// isAuthResponse reports whether r is an authorization response to a login
// this browser started: a state of the shape this package issues, a code or
// an error, and the browser's login cookie named after that state. Nothing
// else carries that cookie name, so this recognises a callback that was
// routed to another path without mistaking an application page for one.
func isAuthResponse(r *http.Request) bool {
	if r.Method != http.MethodGet || !strings.Contains(r.URL.RawQuery, "state=") {
		return false
	}
	q := r.URL.Query()
	state := q.Get("state")
	if len(state) != 43 || (!q.Has("code") && !q.Has("error")) {
		return false
	}
	name := flowCookieName(state)
	_, err := r.Cookie(name)
	if err != nil {
		_, err = r.Cookie(hostPrefix + name) // over https
	}
	return err == nil
}

// misrouted handles an authorization response that reached the middleware
// at a path other than the callback path. Starting a login from it would
// send the browser back to the provider, which would send it here again:
// it is completed instead (or refused once, by the callback's own checks),
// and the mismatch is logged so that the routing can be fixed.
func (rp *RP) misrouted(w http.ResponseWriter, r *http.Request) {
	got := truncate(arrivedAt(r), 200)
	rp.log.Warn("oidcrp: the callback for RedirectURL path "+rp.redirectPath+" arrived at "+got+
		"; completing it there. Route that path to the middleware or to CallbackHandler",
		"redirect_path", rp.redirectPath, "arrived_at", got)
	rp.handleCallback(w, r)
}

// returnPath is where a completed login sends the browser: the path its
// attempt recorded, under the prefix a path-rewriting proxy removed from
// the callback when it arrived at a shorter path than RedirectURL's.
func (rp *RP) returnPath(r *http.Request, returnTo string) string {
	returnTo = safeReturnTo(returnTo)
	p := rp.strippedPrefix(r)
	if p == "" || returnTo == p || strings.HasPrefix(returnTo, p+"/") || strings.HasPrefix(returnTo, p+"?") {
		return returnTo
	}
	return safeReturnTo(p + returnTo)
}

// strippedPrefix returns the leading segments of the RedirectURL path that
// are missing from the path the callback request r arrived at, when the
// latter is the rest of the former ("/app" for "/auth/callback" arriving
// for "/app/auth/callback"), and "" otherwise.
func (rp *RP) strippedPrefix(r *http.Request) string {
	got, want := arrivedAt(r), rp.redirectPath
	if len(got) >= len(want) || !strings.HasPrefix(got, "/") || !strings.HasSuffix(want, got) {
		return ""
	}
	return want[:len(want)-len(got)]
}
