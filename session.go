package oidcrp

import (
	"errors"
	"fmt"
	"net/http"
	"strings"
	"sync"
	"time"

	"github.com/gorilla/sessions"
)

// sessionCache remembers cookie values already opened, so an authenticated
// request costs a map lookup. An entry never outlives its session; a
// revoked session is refused by the revocation check that follows.
type sessionCache struct {
	mu      sync.RWMutex
	byValue map[string]*User
}

const maxCachedSessions = 10000

func newSessionCache() *sessionCache {
	return &sessionCache{byValue: map[string]*User{}}
}

func (c *sessionCache) get(value string, now time.Time) *User {
	c.mu.RLock()
	u := c.byValue[value]
	c.mu.RUnlock()
	if u == nil || now.Before(u.Expiry) || u.refreshToken != "" {
		return u // a refreshable session is refreshed, or dropped, by its user
	}
	c.mu.Lock()
	delete(c.byValue, value)
	c.mu.Unlock()
	return nil
}

// put caches a decoded session.
func (c *sessionCache) put(value string, u *User) {
	c.mu.Lock()
	defer c.mu.Unlock()
	if len(c.byValue) >= maxCachedSessions {
		for k := range c.byValue { // drop an arbitrary half
			delete(c.byValue, k)
			if len(c.byValue) < maxCachedSessions/2 {
				break
			}
		}
	}
	c.byValue[value] = u
}

// replace points a cookie value at the refreshed session, so concurrent
// requests still carrying the old cookie use it too.
func (c *sessionCache) replace(value string, u *User) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byValue[value] = u
}

// user returns the request's signed-in user, refreshing the session's
// tokens first when they expired and a refresh token is kept. A session
// that cannot be refreshed has ended: nil.
func (rp *RP) user(w http.ResponseWriter, r *http.Request) *User {
	u := rp.sessionUser(r)
	if u == nil {
		return nil
	}
	now := rp.now()
	switch {
	case u.refreshToken == "":
		return u // sessionUser let only live sessions through
	case !rp.refreshable(u, now):
		return nil
	case now.Before(u.Expiry) && (u.accessExpiry.IsZero() || now.Before(u.accessExpiry.Add(-u.refreshSkew()))):
		return u
	}
	return rp.refreshed(w, r, u)
}

// refreshable reports whether a session with a refresh token may still be
// refreshed: not past Config.SessionLifetime, and, without one, at most
// maxRefreshable after login.
func (rp *RP) refreshable(u *User, now time.Time) bool {
	if rp.cfg.SessionLifetime > 0 {
		return now.Before(u.Expiry) // the configured lifetime is over, refresh token or not
	}
	return u.since.IsZero() || now.Sub(u.since) <= maxRefreshable
}

// sessionValueKey is the sessions.Session value holding the encoded user
// when Config.SessionStore is set.
const sessionValueKey = "oidcrp.user"

// sessionUser returns the request's session user, or nil when there is none
// or it cannot be read (which means logged out, never an error page). The
// user may need a refresh: see RP.user.
func (rp *RP) sessionUser(r *http.Request) *User {
	rp.revocations.watch()
	var u *User
	if rp.cfg.SessionStore != nil {
		u = rp.storeUser(r)
	} else {
		u = rp.cookieUser(r)
	}
	if u == nil || rp.revocations.ended(u) {
		return nil
	}
	return u
}

// cookieUser opens the sealed session cookie, or finds it already opened.
func (rp *RP) cookieUser(r *http.Request) *User {
	value := cookieValue(r, rp.cfg.SessionName)
	if value == "" {
		return nil
	}
	now := rp.now()
	if u := rp.sessions.get(value, now); u != nil {
		return u
	}
	s, err := rp.keys.sealer(r.Context())
	if err != nil {
		return nil
	}
	pt, err := s.open("session", rp.bind(rp.cfg.SessionName), value)
	if err != nil {
		rp.log.Debug("oidcrp: session cookie refused", "reason", err.Error())
		return nil
	}
	u, err := decodeUser(pt)
	if err != nil || u.Issuer != rp.cfg.Issuer || (!now.Before(u.Expiry) && u.refreshToken == "") {
		return nil
	}
	rp.sessions.put(value, rp.track(u))
	return u
}

// cookieValue returns the value of the first cookie named name, without
// the per-byte validation of http.Request.Cookie: the value is authenticated
// when opened, and this lookup is most of the cost of an authenticated
// request otherwise.
func cookieValue(r *http.Request, name string) string {
	for _, line := range r.Header["Cookie"] {
		for part := range strings.SplitSeq(line, ";") {
			part = strings.TrimSpace(part)
			if len(part) > len(name) && part[len(name)] == '=' && part[:len(name)] == name {
				return part[len(name)+1:]
			}
		}
	}
	return ""
}

func (rp *RP) storeUser(r *http.Request) *User {
	sess, err := rp.cfg.SessionStore.Get(r, rp.cfg.SessionName)
	if err != nil || sess == nil {
		return nil
	}
	b, ok := sess.Values[sessionValueKey].([]byte)
	if !ok {
		return nil
	}
	u, err := decodeUser(b)
	if err != nil || u.Issuer != rp.cfg.Issuer || (!rp.now().Before(u.Expiry) && u.refreshToken == "") {
		return nil
	}
	return rp.track(u)
}

// maxCookieBytes keeps the session cookie, name and attributes included,
// under the 4096 bytes browsers accept.
const maxCookieBytes = 3800

// startSession stores u in a new session (at login: a new server-side
// identifier too) or, with renew, in the request's session (a refresh).
func (rp *RP) startSession(w http.ResponseWriter, r *http.Request, u *User, renew bool) error {
	cp := *u // the caller's user may be shared with other requests
	u = &cp
	if rp.cfg.SessionStore != nil {
		return rp.storeSession(w, r, u, renew)
	}
	s, err := rp.keys.sealer(r.Context())
	if err != nil {
		return err
	}
	value := s.seal("session", rp.bind(rp.cfg.SessionName), u.encode())
	if len(value) > maxCookieBytes && u.idToken != "" && u.flatten() == nil {
		u.idToken = "" // logout falls back to client_id
		value = s.seal("session", rp.bind(rp.cfg.SessionName), u.encode())
	}
	if len(value) > maxCookieBytes {
		return fmt.Errorf("oidcrp: session of %d bytes does not fit a cookie; drop claims with Config.ClaimFilter or use Config.SessionStore", len(value))
	}
	c := rp.cookie(rp.cfg.SessionName, value, "/", u.Expiry)
	if rp.outlivesExpiry(u) {
		c.Expires, c.MaxAge = time.Time{}, 0 // until the browser closes; refreshes decide on the server
	}
	http.SetCookie(w, c)
	return nil
}

// errSessionGone means that a refreshed session's server-side record was
// deleted while the refresh was in flight: the session is over.
var errSessionGone = errors.New("oidcrp: the session ended meanwhile: its server-side record is gone")

// storeSession saves u in Config.SessionStore. A refresh (renew) rewrites
// only the record the request's cookie names, read again just before: a
// record deleted meanwhile (a logout, at this replica or another) stays
// deleted.
func (rp *RP) storeSession(w http.ResponseWriter, r *http.Request, u *User, renew bool) error {
	sess, err := rp.cfg.SessionStore.New(r, rp.cfg.SessionName) // not Get: the request's cached copy may be stale
	if sess == nil {
		return errors.New("oidcrp: session store returned no session")
	}
	if renew {
		var old *User
		if b, ok := sess.Values[sessionValueKey].([]byte); ok && err == nil && !sess.IsNew {
			old, _ = decodeUser(b)
		}
		if old == nil || old.sid != u.sid {
			return errSessionGone
		}
	} else {
		// Never continue a session identifier the browser brought (an
		// undecodable old cookie is no error here): that would let a
		// planted cookie fixate the session.
		sess.ID, sess.IsNew = "", true
	}
	sess.Values = map[any]any{sessionValueKey: u.encode()}
	rp.sessionOptions(sess)
	// The record lasts as long as the session may: gorilla stores take a
	// MaxAge of 0 for "delete".
	until := u.Expiry
	if rp.outlivesExpiry(u) {
		since := u.since
		if since.IsZero() {
			since = rp.now()
		}
		until = since.Add(maxRefreshable)
	}
	sess.Options.MaxAge = max(1, int(until.Sub(rp.now()).Seconds()))
	if err := sess.Save(r, w); err != nil {
		return err
	}
	if rp.outlivesExpiry(u) {
		browserSessionCookie(w.Header(), rp.cfg.SessionName)
	}
	return nil
}

// sessionOptions gives a server-side session's cookie the library's
// attributes, whatever the store's defaults: a __Host- cookie (over https)
// must have Path "/" and no Domain.
func (rp *RP) sessionOptions(sess *sessions.Session) {
	o := *sess.Options // the store's defaults may be shared
	o.HttpOnly, o.Secure, o.SameSite, o.Path = true, rp.secure, http.SameSiteLaxMode, "/"
	if rp.secure {
		o.Domain = ""
	}
	sess.Options = &o
}

// browserSessionCookie drops the expiry from the cookie named name that h
// sets, so that it lasts until the browser closes while its server-side
// record lasts as long as the session may be refreshed.
func browserSessionCookie(h http.Header, name string) {
	set := h["Set-Cookie"]
	for i := len(set) - 1; i >= 0; i-- {
		c, err := http.ParseSetCookie(set[i])
		if err != nil || c.Name != name {
			continue
		}
		if c.MaxAge > 0 {
			c.MaxAge, c.Expires = 0, time.Time{}
			set[i] = c.String()
		}
		return
	}
}

// outlivesExpiry reports whether u's session may be refreshed past its
// Expiry, so its cookie must not expire with it.
func (rp *RP) outlivesExpiry(u *User) bool {
	return u.refreshToken != "" && rp.cfg.SessionLifetime == 0
}

// endSession clears the session cookie and revokes u's session.
func (rp *RP) endSession(w http.ResponseWriter, r *http.Request, u *User) {
	if u != nil {
		if err := rp.endSessionEverywhere(r.Context(), u); err != nil {
			rp.log.Error("oidcrp: the logout holds in this process only", "err", err)
		}
	}
	if rp.cfg.SessionStore != nil {
		if sess, _ := rp.cfg.SessionStore.Get(r, rp.cfg.SessionName); sess != nil {
			delete(sess.Values, sessionValueKey)
			rp.sessionOptions(sess)
			sess.Options.MaxAge = -1
			if err := sess.Save(r, w); err != nil {
				rp.log.Error("oidcrp: deleting the server-side session failed", "err", err)
			}
		}
		return
	}
	http.SetCookie(w, rp.cookie(rp.cfg.SessionName, "", "/", time.Time{}))
}

// cookie makes a cookie with the library's attributes; a zero expiry
// deletes it.
func (rp *RP) cookie(name, value, path string, expires time.Time) *http.Cookie {
	c := &http.Cookie{Name: name, Value: value, Path: path, HttpOnly: true, Secure: rp.secure, SameSite: http.SameSiteLaxMode}
	if expires.IsZero() {
		c.MaxAge = -1
	} else {
		c.Expires = expires
		c.MaxAge = max(1, int(expires.Sub(rp.now()).Seconds()))
	}
	return c
}

// bind names what a sealed value is bound to: the tenant and the cookie.
func (rp *RP) bind(cookie string) string { return rp.tenant + "\x00" + cookie }
