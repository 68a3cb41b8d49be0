package oidcrp

import (
	"crypto/subtle"
	"encoding/json"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"
)

// logoutCookie names the cookie that carries a logout's state after the
// session cookie ("oidcrp_logout" by default, "__Host-oidcrp_logout" over
// https; each tenant its own), and gives its path: LogoutPath, or "/" as
// the __Host- prefix requires.
func (rp *RP) logoutCookie() (name, path string) {
	if rp.secure {
		return rp.cfg.SessionName + "_logout", "/"
	}
	return rp.cfg.SessionName + "_logout", rp.cfg.LogoutPath
}

// handleLogout serves Config.LogoutPath:
//
//   - POST ends the local session and, when the provider has an
//     end_session_endpoint, sends the browser there (OpenID Connect
//     RP-Initiated Logout 1.0) with id_token_hint (or client_id when the ID
//     token did not fit the cookie), post_logout_redirect_uri and state;
//     a provider that did not register the post-logout redirect URI gets
//     no such request: the browser sees our signed-out page instead;
//   - GET with state is the provider sending the browser back;
//   - GET without state shows a sign-out button, so that a cross-site link
//     cannot sign users out.
func (rp *RP) handleLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	switch r.Method {
	case http.MethodPost:
		if !sameOrigin(r, rp.cfg.RedirectURL) {
			rp.reject(w, r, http.StatusForbidden, refusal(ReasonBadRequest, "cross-site logout refused"))
			return
		}
		rp.logout(w, r)
	case http.MethodGet, http.MethodHead:
		if state := r.URL.Query().Get("state"); state != "" || r.URL.Query().Has("done") {
			rp.loggedOut(w, r, state)
			return
		}
		writePage(w, http.StatusOK, signOutView(rp.sessionUser(r), rp.cfg.LogoutPath))
	default:
		w.Header().Set("Allow", "GET, POST")
		rp.fail(w, r, http.StatusMethodNotAllowed, refusal(ReasonBadRequest, "logout takes GET or POST"))
	}
}

func (rp *RP) logout(w http.ResponseWriter, r *http.Request) {
	ctx, end := rp.trace.span(r.Context(), opLogout, rp.clientID())
	defer end(nil)
	r = r.WithContext(ctx)
	u := rp.sessionUser(r)
	rp.endSession(w, r, u)
	if u != nil {
		rp.log.Info("oidcrp: logout", "sub", u.Subject)
		rp.revokeTokens(r.Context(), u) // in the background
	}
	done := rp.cfg.LogoutPath + "?done"
	c, err := rp.lc.client(r.Context())
	if err != nil || c.disc.EndSessionEndpoint == "" {
		if err != nil {
			rp.log.Debug("oidcrp: provider unavailable; ended the local session only", "err", err) // the outage is logged once
		}
		http.Redirect(w, r, done, http.StatusSeeOther)
		return
	}
	if rp.cfg.ClientID == "" && !slices.Contains(c.creds.Metadata.PostLogoutRedirectURIs, rp.cfg.PostLogoutRedirectURL) {
		// The provider did not register our post-logout redirect URI (the
		// registration response lists every registered value, RFC 7591
		// §3.2.1). Naming it would get the user the provider's error page;
		// leaving it out would strand the user on the provider's pages. Our
		// own signed-out page it is; the provider's session stays.
		rp.log.Info("oidcrp: ended the local session only: the provider did not register the post-logout redirect URI",
			"client_id", c.creds.ClientID, "post_logout_redirect_uri", rp.cfg.PostLogoutRedirectURL)
		http.Redirect(w, r, done, http.StatusSeeOther)
		return
	}
	s, err := rp.keys.sealer(r.Context())
	if err != nil {
		http.Redirect(w, r, done, http.StatusSeeOther)
		return
	}
	state := randomString()
	name, path := rp.logoutCookie()
	http.SetCookie(w, rp.cookie(name, s.seal("logout", rp.bind(name), []byte(state)), path, rp.now().Add(flowLifetime)))
	q := url.Values{"post_logout_redirect_uri": {rp.cfg.PostLogoutRedirectURL}, "state": {state}}
	if u != nil && u.idToken != "" && tokenAudience(u.idToken) == c.creds.ClientID {
		q.Set("id_token_hint", u.idToken)
	} else {
		// No hint, or one issued to a client since replaced, which the
		// provider would refuse.
		q.Set("client_id", c.creds.ClientID)
	}
	target := c.disc.EndSessionEndpoint
	if strings.Contains(target, "?") {
		target += "&" + q.Encode()
	} else {
		target += "?" + q.Encode()
	}
	http.Redirect(w, r, target, http.StatusSeeOther)
}

// tokenAudience returns the single audience of a JWT, or "".
func tokenAudience(raw string) string {
	payload, err := jwtPayload(raw)
	if err != nil {
		return ""
	}
	var c struct {
		Aud json.RawMessage `json:"aud"`
	}
	if json.Unmarshal(payload, &c) != nil {
		return ""
	}
	var one string
	if json.Unmarshal(c.Aud, &one) == nil {
		return one
	}
	var list []string
	if json.Unmarshal(c.Aud, &list) == nil && len(list) == 1 {
		return list[0]
	}
	return ""
}

// loggedOut is where the provider returns the browser after logout.
func (rp *RP) loggedOut(w http.ResponseWriter, r *http.Request, state string) {
	if state != "" {
		ok := false
		name, path := rp.logoutCookie()
		if ck, err := r.Cookie(name); err == nil {
			if s, err := rp.keys.sealer(r.Context()); err == nil {
				want, err := s.open("logout", rp.bind(name), ck.Value)
				ok = err == nil && subtle.ConstantTimeCompare(want, []byte(state)) == 1
			}
		}
		if !ok {
			rp.log.Warn("oidcrp: post-logout redirect with an unknown state")
		}
		http.SetCookie(w, rp.cookie(name, "", path, time.Time{}))
	}
	writePage(w, http.StatusOK, signedOutView())
}

// sameOrigin reports whether a state-changing request comes from the
// application's own pages, by the Sec-Fetch-Site and Origin headers
// browsers send.
func sameOrigin(r *http.Request, appURL string) bool {
	if site := r.Header.Get("Sec-Fetch-Site"); site != "" && site != "same-origin" && site != "none" {
		return false
	}
	origin := r.Header.Get("Origin")
	if origin == "" {
		return true // not sent by older browsers for same-origin forms, nor by non-browser clients
	}
	u, err := url.Parse(appURL)
	return err == nil && origin == u.Scheme+"://"+u.Host
}
