package main

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httputil"
	"strings"
	"time"

	"github.com/oidcrp/oidcrp"
)

// identityHeaders are the request headers that carry the user's identity to
// the upstream (oauth2-proxy's names) or to an auth_request caller. Whatever
// the client sends under these names is removed before the request goes on.
var identityHeaders = []string{
	"X-Forwarded-User",
	"X-Forwarded-Email",
	"X-Forwarded-Preferred-Username",
	"X-Forwarded-Groups",
	"X-Forwarded-Access-Token",
	"X-Auth-Request-User",
	"X-Auth-Request-Email",
	"X-Auth-Request-Preferred-Username",
	"X-Auth-Request-Groups",
	"X-Auth-Request-Access-Token",
	"Authorization",
}

// identityHeaderSet holds identityHeaders, canonical, for the common case.
var identityHeaderSet = func() map[string]bool {
	m := map[string]bool{}
	for _, h := range identityHeaders {
		m[h] = true
	}
	return m
}()

// protectedName reports whether a header name is one of identityHeaders as
// CGI, WSGI and PHP see it: case-insensitive, with '_' for '-'.
// X_Forwarded_User and X-Forwarded-User become the same variable there, so
// both spellings are removed. Go's server canonicalizes names without '_'.
func protectedName(name string) bool {
	if identityHeaderSet[name] {
		return true
	}
	if !strings.ContainsRune(name, '_') && name == http.CanonicalHeaderKey(name) {
		return false
	}
	n := strings.ReplaceAll(name, "_", "-")
	for _, h := range identityHeaders {
		if strings.EqualFold(n, h) {
			return true
		}
	}
	return false
}

// stripIdentity removes every header the client may have sent to pass for
// the proxy's identity headers.
func stripIdentity(h http.Header) {
	for name := range h {
		if protectedName(name) {
			delete(h, name)
		}
	}
}

// setIdentity adds the user's identity headers for the upstream: the
// identity, the access token and the ID token when they are given.
func setIdentity(h http.Header, id *identity, accessToken, idToken string) {
	h["X-Forwarded-User"] = []string{id.Subject}
	if id.Email != "" {
		h["X-Forwarded-Email"] = []string{id.Email}
	}
	if id.PreferredUsername != "" {
		h["X-Forwarded-Preferred-Username"] = []string{id.PreferredUsername}
	}
	if len(id.Groups) > 0 {
		h["X-Forwarded-Groups"] = []string{strings.Join(id.Groups, ",")}
	}
	if accessToken != "" {
		h["X-Forwarded-Access-Token"] = []string{accessToken}
	}
	if idToken != "" {
		h["Authorization"] = []string{"Bearer " + idToken}
	}
}

// isSessionCookie reports whether name is one of the library's cookies:
// the session ("oidcrp", a tenant's "oidcrp_" and 12 hex digits, with
// "__Host-" in front when the public URL is https) and the login attempts.
func isSessionCookie(name string) bool {
	name = strings.TrimPrefix(name, "__Host-")
	if name == "oidcrp" || strings.HasPrefix(name, "oidcrp_login_") {
		return true
	}
	suffix, ok := strings.CutPrefix(name, "oidcrp_")
	if !ok || len(suffix) != 12 {
		return false
	}
	for _, r := range suffix {
		if !('0' <= r && r <= '9' || 'a' <= r && r <= 'f') {
			return false
		}
	}
	return true
}

// withoutSessionCookies removes the proxy's own cookies (the session and the
// login attempts) from a Cookie header: the upstream has no use for them.
func withoutSessionCookies(h http.Header) {
	lines := h["Cookie"]
	if len(lines) == 0 {
		return
	}
	var kept []string
	changed := false
	for _, line := range lines {
		for _, c := range strings.Split(line, ";") {
			name, _, _ := strings.Cut(strings.TrimSpace(c), "=")
			if isSessionCookie(name) {
				changed = true
				continue
			}
			if c = strings.TrimSpace(c); c != "" {
				kept = append(kept, c)
			}
		}
	}
	if !changed {
		return
	}
	if len(kept) == 0 {
		delete(h, "Cookie")
		return
	}
	h["Cookie"] = []string{strings.Join(kept, "; ")}
}

// newProxy returns the reverse proxy to the upstream. It streams (responses
// of unknown length and event streams are flushed as they come), passes
// WebSocket upgrades, sets X-Forwarded-For, -Host and -Proto, and adds the
// identity of the user that the middleware put in the request context.
func newProxy(c *config, ids *identities, log *slog.Logger) *httputil.ReverseProxy {
	transport := http.DefaultTransport.(*http.Transport).Clone()
	// Go's default of 2 idle connections per host makes a busy proxy open and
	// close upstream connections all the time; keep enough for the load.
	transport.MaxIdleConns = 1024
	transport.MaxIdleConnsPerHost = 512
	transport.IdleConnTimeout = 90 * time.Second
	transport.DialContext = (&net.Dialer{Timeout: 10 * time.Second, KeepAlive: 30 * time.Second}).DialContext
	httpsPublic := c.public.Scheme == "https"
	return &httputil.ReverseProxy{
		Transport: transport,
		Rewrite: func(pr *httputil.ProxyRequest) {
			pr.SetURL(c.upstreamURL)
			pr.SetXForwarded() // the client's X-Forwarded-* were removed before Rewrite
			if httpsPublic {
				pr.Out.Header.Set("X-Forwarded-Proto", "https") // TLS ended in front of the proxy
			}
			if c.passHostHeader {
				pr.Out.Host = pr.In.Host
			}
			stripIdentity(pr.Out.Header)
			withoutSessionCookies(pr.Out.Header)
			if u, ok := oidcrp.UserFromContext(pr.In.Context()); ok {
				at, idt := "", ""
				if c.passAccessToken {
					at = u.AccessToken()
				}
				if c.passAuthorization {
					// "" when the ID token was dropped to keep the session
					// cookie small: then no Authorization header at all.
					idt = u.IDToken()
				}
				setIdentity(pr.Out.Header, ids.of(u), at, idt)
			}
		},
		ErrorHandler: func(w http.ResponseWriter, r *http.Request, err error) {
			if errors.Is(err, context.Canceled) && r.Context().Err() != nil {
				w.WriteHeader(http.StatusBadGateway) // the client went away: nothing to report
				return
			}
			log.Warn("upstream request failed", "upstream", c.upstreamURL.String(), "path", r.URL.Path, "err", err)
			http.Error(w, "The application behind this proxy is not answering.", http.StatusBadGateway)
		},
	}
}
