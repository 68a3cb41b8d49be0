package main

import (
	"context"
	"encoding/json"
	"log/slog"
	"net/http"
	"net/url"
	"path"
	"strings"
	"time"

	"github.com/oidcrp/oidcrp"
)

// The proxy's own paths, oauth2-proxy's.
const (
	callbackPath     = "/oauth2/callback"
	signOutPath      = "/oauth2/sign_out"
	startPath        = "/oauth2/start"
	authPath         = "/oauth2/auth"
	userinfoPath     = "/oauth2/userinfo"
	backchannelPath  = "/oauth2/backchannel-logout"  // the library's default next to signOutPath
	frontchannelPath = "/oauth2/frontchannel-logout" // likewise
)

// handler routes /ping and /ready, then the proxy's own endpoints of the
// request's relying party (the only one, or the tenant of its host), then
// public paths, and sends everything else through sign-in and
// authorization to the upstream.
type handler struct {
	public   []string
	upstream http.Handler
	ready    http.Handler
	single   *site        // without tenants
	tenants  *tenantSites // with -tenant
}

// site is the endpoints of one relying party.
type site struct {
	own       map[string]http.Handler
	protected http.Handler
}

func newSite(c *config, rp *oidcrp.RP, origin *url.URL, ids *identities, upstream http.Handler) *site {
	start := startHandler(origin, rp)
	return &site{
		protected: rp.Require(authorize(ids, upstream)),
		own: map[string]http.Handler{
			callbackPath:      rp.CallbackHandler(),
			signOutPath:       rp.LogoutHandler(),
			backchannelPath:   rp.BackchannelLogoutHandler(),
			frontchannelPath:  rp.FrontchannelLogoutHandler(),
			startPath:         start,
			"/oauth2/sign_in": start,
			authPath:          rp.Optional(authHandler(ids, c.passAccessToken)),
			userinfoPath:      rp.Optional(userinfoHandler(ids)),
		},
	}
}

// newHandler serves one relying party, rp, or with tenants (rp nil) the
// tenant of each request's host.
func newHandler(c *config, rp *oidcrp.RP, ts *tenantSites, log *slog.Logger) http.Handler {
	ids := &identities{policy: &c.policy}
	upstream := newProxy(c, ids, log)
	h := &handler{public: c.publicPaths, upstream: upstream}
	if ts != nil {
		ts.build = func(rp *oidcrp.RP, origin *url.URL) *site { return newSite(c, rp, origin, ids, upstream) }
		h.tenants = ts
		h.ready = readyHandler(func(ctx context.Context) error {
			rps, err := ts.all()
			for _, rp := range rps {
				if err == nil {
					err = rp.Ready(ctx)
				}
			}
			return err
		}, func() any { return ts.tenants.Status() })
	} else {
		h.single = newSite(c, rp, c.public, ids, upstream)
		h.ready = readyHandler(rp.Ready, func() any { return rp.Status() })
	}
	return h
}

func (h *handler) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	p := r.URL.Path
	switch p {
	case "/ping":
		ping(w, r)
		return
	case "/ready":
		h.ready.ServeHTTP(w, r)
		return
	}
	s := h.single
	if h.tenants != nil {
		if s = h.tenants.site(r); s == nil {
			http.NotFound(w, r) // a host no tenant has: never a tenant made from the Host header
			return
		}
	}
	if own, ok := s.own[p]; ok {
		own.ServeHTTP(w, r)
		return
	}
	if strings.HasPrefix(p, "/oauth2/") {
		http.NotFound(w, r)
		return
	}
	if h.isPublic(p) {
		h.upstream.ServeHTTP(w, r)
		return
	}
	s.protected.ServeHTTP(w, r)
}

// isPublic reports whether path is one of the configured public paths. Only
// a clean path can be: /public/../admin must not pass for /public/.
func (h *handler) isPublic(p string) bool {
	if len(h.public) == 0 {
		return false
	}
	clean := path.Clean(p)
	if clean != p && clean+"/" != p {
		return false
	}
	for _, pp := range h.public {
		if p == pp || (strings.HasSuffix(pp, "/") && strings.HasPrefix(p, pp)) {
			return true
		}
	}
	return false
}

// authorize lets the users the policy allows through to next and answers
// 403 to the others.
func authorize(ids *identities, next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcrp.UserFromContext(r.Context())
		if id := ids.of(u); !id.allowed {
			forbidden(w, r, id, id.why)
			return
		}
		next.ServeHTTP(w, r)
	})
}

// startHandler starts a sign-in and returns to rd, a path or a URL on the
// proxy's public origin, origin (oauth2-proxy's /oauth2/start?rd=).
func startHandler(origin *url.URL, rp *oidcrp.RP) http.Handler {
	login := rp.LoginHandler()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		rd := r.URL.Query().Get("rd")
		if u, err := url.Parse(rd); err == nil && u.IsAbs() {
			rd = "/"
			if u.Scheme == origin.Scheme && strings.EqualFold(u.Host, origin.Host) {
				rd = u.RequestURI()
			}
		}
		r2 := r.Clone(r.Context())
		r2.URL.RawQuery = url.Values{"return_to": {rd}}.Encode()
		login.ServeHTTP(w, r2)
	})
}

// authHandler answers nginx auth_request, Traefik forwardAuth and Caddy
// forward_auth: 202 with the identity for an allowed user, 401 without a
// session, 403 for a user who is not allowed.
func authHandler(ids *identities, passAccessToken bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		u, ok := oidcrp.UserFromContext(r.Context())
		if !ok {
			w.WriteHeader(http.StatusUnauthorized)
			return
		}
		id := ids.of(u)
		if !id.allowed {
			w.WriteHeader(http.StatusForbidden)
			return
		}
		h := w.Header()
		h.Set("X-Auth-Request-User", id.Subject)
		if id.Email != "" {
			h.Set("X-Auth-Request-Email", id.Email)
		}
		if id.PreferredUsername != "" {
			h.Set("X-Auth-Request-Preferred-Username", id.PreferredUsername)
		}
		if len(id.Groups) > 0 {
			h.Set("X-Auth-Request-Groups", strings.Join(id.Groups, ","))
		}
		if at := u.AccessToken(); passAccessToken && at != "" {
			h.Set("X-Auth-Request-Access-Token", at)
		}
		w.WriteHeader(http.StatusAccepted)
	})
}

// userinfoHandler answers oauth2-proxy's /oauth2/userinfo JSON.
func userinfoHandler(ids *identities) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "no-store")
		u, ok := oidcrp.UserFromContext(r.Context())
		if !ok {
			writeJSON(w, http.StatusUnauthorized, map[string]string{"error": "login_required"})
			return
		}
		id := ids.of(u)
		body := map[string]any{"user": id.Subject, "email": id.Email}
		if id.PreferredUsername != "" {
			body["preferredUsername"] = id.PreferredUsername
		}
		if len(id.Groups) > 0 {
			body["groups"] = id.Groups
		}
		writeJSON(w, http.StatusOK, body)
	})
}

func ping(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	_, _ = w.Write([]byte("OK"))
}

// readyHandler answers 200 once the provider is discovered and the client
// registered (every tenant's, with tenants), 503 otherwise, with the
// registration status.
func readyHandler(ready func(context.Context) error, status func() any) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), 5*time.Second)
		defer cancel()
		w.Header().Set("Cache-Control", "no-store")
		code := http.StatusOK
		if err := ready(ctx); err != nil {
			code = http.StatusServiceUnavailable
		}
		writeJSON(w, code, status())
	})
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(v)
}
