package oidcrp

import (
	"html/template"
	"net/http"
	"sync"
	"time"
)

// OpenID Connect Front-Channel Logout 1.0, for providers that do not offer
// back-channel logout: at logout the provider loads the registered
// frontchannel_logout_uri (Config.FrontchannelLogoutPath on RedirectURL's
// origin) in an iframe, with iss and sid in the query.

// FrontchannelLogoutHandler returns a handler for the provider's
// front-channel logout requests (OpenID Connect Front-Channel Logout 1.0),
// for applications that route Config.FrontchannelLogoutPath themselves;
// [RP.Require], [RP.Optional] and the RP as a handler answer that path
// already. Mount it where GET requests for the registered
// frontchannel_logout_uri arrive, and let them be framed by the provider.
//
// A GET with iss (this provider's issuer) and sid ends every session
// started in that provider session, in every process that shares the store
// (under [Tenants], in the tenant only); a GET without them, allowed only
// when the registration did not ask for them, ends the session of the
// cookie the browser sent, if any. A wrong iss, or a missing sid when the
// registration requires one, gets 400. The answer is a small page without
// scripts that may be shown in a frame, and is never cached.
func (rp *RP) FrontchannelLogoutHandler() http.Handler {
	return http.HandlerFunc(rp.handleFrontchannelLogout)
}

// Front-channel logout requests come from browsers, unauthenticated: each
// one with a sid adds an entry to the shared revocation record. Their rate
// is bounded so that made-up sids cannot fill the record.
const (
	frontchannelBurst = 60          // requests with a sid at once
	frontchannelEvery = time.Second // then one per this
)

// rateLimit is a token bucket.
type rateLimit struct {
	mu     sync.Mutex
	tokens float64
	last   time.Time
}

func (l *rateLimit) allow(now time.Time, burst int, every time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.last.IsZero() {
		l.tokens = float64(burst)
	} else {
		l.tokens = min(float64(burst), l.tokens+float64(now.Sub(l.last))/float64(every))
	}
	l.last = now
	if l.tokens < 1 {
		return false
	}
	l.tokens--
	return true
}

func (rp *RP) handleFrontchannelLogout(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		writeFramePage(w, http.StatusMethodNotAllowed, "Front-channel logout takes GET.")
		return
	}
	ctx, end := rp.trace.span(r.Context(), opFrontchannelLogout, rp.clientID())
	q := r.URL.Query()
	iss, sid := q.Get("iss"), q.Get("sid")
	required := false
	if c, err := rp.lc.client(ctx); err == nil {
		required = c.creds.Metadata.FrontchannelLogoutSessionRequired
	}
	var le *logoutError
	switch {
	case q.Has("iss") && iss != rp.cfg.Issuer:
		le = invalidLogout("front-channel logout from issuer %q, expected %q", truncate(iss, 200), rp.cfg.Issuer)
	case sid != "" && iss == "":
		le = invalidLogout("front-channel logout with sid but without iss")
	case sid == "" && required:
		le = invalidLogout("front-channel logout without the sid the registration requires")
	case sid != "" && !rp.frontchannel.allow(rp.now(), frontchannelBurst, frontchannelEvery):
		le = &logoutError{status: http.StatusTooManyRequests, code: "slow_down", why: "too many front-channel logout requests"}
	}
	if le != nil {
		end(le)
		rp.log.Warn("oidcrp: front-channel logout refused", "status", le.status, "reason", le.why)
		writeFramePage(w, le.status, "This sign-out request was refused.")
		return
	}
	if sid != "" {
		if err := rp.endProviderSession(ctx, sid); err != nil {
			rp.log.Error("oidcrp: the front-channel logout holds in this process only", "err", err)
		}
		rp.log.Info("oidcrp: front-channel logout ended the provider session's sessions")
	} else if u := rp.sessionUser(r.WithContext(ctx)); u != nil {
		// No sid: the session is the browser's own, when its cookie came
		// along (a first-party frame, or a browser sending it to frames).
		rp.endSession(w, r.WithContext(ctx), u)
		rp.log.Info("oidcrp: front-channel logout ended the browser's session", "sub", u.Subject)
	}
	end(nil)
	writeFramePage(w, http.StatusOK, "You are signed out of this application.")
}

// writeFramePage answers a front-channel logout request: a page without
// scripts or outside resources that the provider's page may frame, never
// cached (Front-Channel Logout 1.0 §2).
func writeFramePage(w http.ResponseWriter, status int, message string) {
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'")
	w.WriteHeader(status)
	_, _ = w.Write([]byte(`<!doctype html><html lang="en"><head><meta charset="utf-8"><meta name="referrer" content="no-referrer"><title>Sign-out</title></head><body><p>` +
		template.HTMLEscapeString(message) + "</p></body></html>\n"))
}
