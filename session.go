package oidcrp

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// User is the signed-in user of a request, as kept in its session.
type User struct {
	Issuer  string    // the provider that authenticated the user
	Subject string    // the provider's identifier of the user ("sub")
	Expiry  time.Time // when the session ends

	claims  json.RawMessage // all claims, or with layered those the ID token lacks
	idToken string          // raw ID token, for the logout hint; dropped when too large
	layered bool            // the claims are the ID token's plus claims
	sid     string          // session identifier, for revocation

	// With Config.KeepTokens:
	accessToken  string
	accessExpiry time.Time // zero: not reported
	refreshToken string
	tokensAt     time.Time // when the tokens were obtained
}

// AccessToken returns the user's access token when Config.KeepTokens is set
// (refreshed by the middleware before it expires, when the provider issued
// a refresh token), and "" otherwise. Send it only to the resource servers
// it is meant for.
func (u *User) AccessToken() string { return u.accessToken }

// Claims decodes the user's claims (the ID token's, merged with userinfo's,
// after Config.ClaimFilter) into v, as json.Unmarshal does.
func (u *User) Claims(v any) error {
	if u.layered {
		payload, err := jwtPayload(u.idToken)
		if err != nil {
			return err
		}
		if err := json.Unmarshal(payload, v); err != nil || len(u.claims) == 0 {
			return err
		}
	}
	if len(u.claims) == 0 {
		return json.Unmarshal([]byte("{}"), v)
	}
	return json.Unmarshal(u.claims, v)
}

// jwtPayload decodes the payload of a compact JWS, whose signature was
// verified when the session was made.
func jwtPayload(raw string) ([]byte, error) {
	_, rest, ok := strings.Cut(raw, ".")
	payload, _, ok2 := strings.Cut(rest, ".")
	if !ok || !ok2 {
		return nil, errors.New("oidcrp: malformed ID token in session")
	}
	return base64.RawURLEncoding.DecodeString(payload)
}

// flatten replaces layered claims by the merged set, so the ID token can be
// dropped.
func (u *User) flatten() error {
	if !u.layered {
		return nil
	}
	all := map[string]any{}
	if err := u.Claims(&all); err != nil {
		return err
	}
	b, err := json.Marshal(all)
	if err != nil {
		return err
	}
	u.claims, u.layered = b, false
	return nil
}

type userKey struct{}

// UserFromContext returns the user that [RP.Require] or [RP.Optional] put in
// the request context, and whether there is one.
func UserFromContext(ctx context.Context) (*User, bool) {
	u, ok := ctx.Value(userKey{}).(*User)
	return u, ok
}

// sessionJSON is the session as sealed into the cookie.
type sessionJSON struct {
	ID      string          `json:"id"`
	Issuer  string          `json:"iss"`
	Subject string          `json:"sub"`
	Expiry  int64           `json:"exp"`
	IDToken string          `json:"idt,omitempty"`
	Claims  json.RawMessage `json:"c,omitempty"`
	Layered bool            `json:"l,omitempty"`
	Access  string          `json:"at,omitempty"`
	AccExp  int64           `json:"ate,omitempty"`
	Refresh string          `json:"rt,omitempty"`
	TokAt   int64           `json:"tt,omitempty"`
}

func (u *User) encode() []byte {
	b, _ := json.Marshal(sessionJSON{ID: u.sid, Issuer: u.Issuer, Subject: u.Subject, Expiry: u.Expiry.Unix(), IDToken: u.idToken, Claims: u.claims, Layered: u.layered,
		Access: u.accessToken, AccExp: unixOrZero(u.accessExpiry), Refresh: u.refreshToken, TokAt: unixOrZero(u.tokensAt)})
	return b
}

func decodeUser(b []byte) (*User, error) {
	var s sessionJSON
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, err
	}
	if s.ID == "" || s.Issuer == "" || s.Subject == "" || (s.Layered && s.IDToken == "") {
		return nil, errors.New("incomplete session")
	}
	return &User{Issuer: s.Issuer, Subject: s.Subject, Expiry: time.Unix(s.Expiry, 0), claims: s.Claims, idToken: s.IDToken, layered: s.Layered, sid: s.ID,
		accessToken: s.Access, accessExpiry: timeOrZero(s.AccExp), refreshToken: s.Refresh, tokensAt: timeOrZero(s.TokAt)}, nil
}

// sealer encrypts and authenticates cookie values with AES-256-GCM. The
// cookie's name and purpose are additional data, so a value cannot be moved
// to another cookie.
type sealer struct {
	aeads []cipher.AEAD // the first seals; all open
}

func newSealer(keys [][]byte) (*sealer, error) {
	s := &sealer{}
	for _, k := range keys {
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte("oidcrp cookie key v1"))
		block, err := aes.NewCipher(mac.Sum(nil))
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		s.aeads = append(s.aeads, aead)
	}
	if len(s.aeads) == 0 {
		return nil, errors.New("oidcrp: no session keys")
	}
	return s, nil
}

func (s *sealer) seal(purpose, name string, plaintext []byte) string {
	aead := s.aeads[0]
	buf := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	rand.Read(buf)
	out := aead.Seal(buf, buf, plaintext, additionalData(purpose, name))
	return base64.RawURLEncoding.EncodeToString(out)
}

func (s *sealer) open(purpose, name, value string) ([]byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return nil, errors.New("not base64url")
	}
	ad := additionalData(purpose, name)
	for _, aead := range s.aeads {
		n := aead.NonceSize()
		if len(raw) < n+aead.Overhead() {
			return nil, errors.New("too short")
		}
		if pt, err := aead.Open(nil, raw[:n], raw[n:], ad); err == nil {
			return pt, nil
		}
	}
	return nil, errors.New("does not authenticate")
}

func additionalData(purpose, name string) []byte {
	return []byte(purpose + "\x00" + name)
}

// sessionKeysKey is where generated session keys are kept in the store.
const sessionKeysKey = "oidcrp:session-keys"

// bind names what a sealed value is bound to: the tenant and the cookie.
func (rp *RP) bind(cookie string) string { return rp.tenant + "\x00" + cookie }

// keyring loads the cookie keys on first use and keeps the sealer. Tenants
// share one.
type keyring struct {
	mu    sync.Mutex
	s     atomic.Pointer[sealer]
	keys  [][]byte // configured keys; none: generated and kept in store
	store CredentialStore
	log   *slog.Logger
}

// sealer returns the cookie sealer, loading or generating the session keys
// on first use.
func (rp *RP) sealer(ctx context.Context) (*sealer, error) { return rp.keys.sealer(ctx) }

func (k *keyring) sealer(ctx context.Context) (*sealer, error) {
	if s := k.s.Load(); s != nil {
		return s, nil
	}
	k.mu.Lock()
	defer k.mu.Unlock()
	if s := k.s.Load(); s != nil {
		return s, nil
	}
	keys := k.keys
	if len(keys) == 0 {
		var err error
		if keys, err = k.shared(ctx); err != nil {
			k.log.Error("oidcrp: session keys unavailable", "err", err)
			return nil, &unavailableError{cause: err, retryAfter: time.Second}
		}
	}
	s, err := newSealer(keys)
	if err != nil {
		return nil, err
	}
	k.s.Store(s)
	return s, nil
}

// shared loads the session keys kept in the store, generating and storing
// one if there is none.
func (k *keyring) shared(ctx context.Context) ([][]byte, error) {
	load := func() ([][]byte, error) {
		b, err := k.store.Load(ctx, sessionKeysKey)
		if err != nil {
			return nil, err
		}
		var keys [][]byte
		if err := json.Unmarshal(b, &keys); err != nil || len(keys) == 0 || len(keys[0]) < 32 {
			return nil, fmt.Errorf("%w: session keys under %q", ErrCorruptStore, sessionKeysKey)
		}
		return keys, nil
	}
	keys, err := load()
	if !errors.Is(err, ErrNotFound) {
		return keys, err
	}
	if l, ok := k.store.(Locker); ok {
		unlock, err := l.Lock(ctx, sessionKeysKey)
		if err != nil {
			return nil, err
		}
		defer unlock()
		if keys, err = load(); !errors.Is(err, ErrNotFound) {
			return keys, err
		}
	}
	key := make([]byte, 32)
	rand.Read(key)
	b, _ := json.Marshal([][]byte{key})
	if err := k.store.Save(ctx, sessionKeysKey, b); err != nil {
		return nil, fmt.Errorf("oidcrp: save session keys: %w", err)
	}
	k.log.Info("oidcrp: generated session keys and stored them", "key", sessionKeysKey)
	return [][]byte{key}, nil
}

// sessionCache remembers cookie values already opened, so an authenticated
// request costs a map lookup. An entry never outlives its session, and
// logout removes it at once.
type sessionCache struct {
	mu      sync.RWMutex
	byValue map[string]*User
	revoked map[string]time.Time // session id → expiry, for sessions logged out
}

const maxCachedSessions = 10000

// refreshableRevocation is how long a logout of a refreshable session is
// remembered in process memory.
const refreshableRevocation = 30 * 24 * time.Hour

func newSessionCache() *sessionCache {
	return &sessionCache{byValue: map[string]*User{}, revoked: map[string]time.Time{}}
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

// put caches a decoded session unless it was logged out.
func (c *sessionCache) put(value string, u *User) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if _, gone := c.revoked[u.sid]; gone {
		return false
	}
	if len(c.byValue) >= maxCachedSessions {
		for k := range c.byValue { // drop an arbitrary half
			delete(c.byValue, k)
			if len(c.byValue) < maxCachedSessions/2 {
				break
			}
		}
	}
	c.byValue[value] = u
	return true
}

// replace points a cookie value at the refreshed session, so concurrent
// requests still carrying the old cookie use it too.
func (c *sessionCache) replace(value string, u *User) {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.byValue[value] = u
}

// revoke ends a session in this process: its cookie, if replayed, is refused
// until the session would have expired anyway.
func (c *sessionCache) revoke(u *User, now time.Time) {
	c.mu.Lock()
	defer c.mu.Unlock()
	for k, exp := range c.revoked {
		if !now.Before(exp) {
			delete(c.revoked, k)
		}
	}
	until := u.Expiry
	if u.refreshToken != "" {
		// A refreshable session outlives its expiry; remember the logout
		// as long as a refresh token may plausibly be honoured.
		if later := now.Add(refreshableRevocation); later.After(until) {
			until = later
		}
	}
	c.revoked[u.sid] = until
	for k, v := range c.byValue {
		if v.sid == u.sid {
			delete(c.byValue, k)
		}
	}
}

func (c *sessionCache) isRevoked(sid string) bool {
	c.mu.RLock()
	defer c.mu.RUnlock()
	_, gone := c.revoked[sid]
	return gone
}

// sessionValueKey is the sessions.Session value holding the encoded user
// when Config.SessionStore is set.
const sessionValueKey = "oidcrp.user"

// sessionUser returns the request's session user, or nil when there is none
// or it cannot be read (which means logged out, never an error page). The
// user may need a refresh: see RP.user.
func (rp *RP) sessionUser(r *http.Request) *User {
	if rp.cfg.SessionStore != nil {
		return rp.storeUser(r)
	}
	value := cookieValue(r, rp.cfg.SessionName)
	if value == "" {
		return nil
	}
	now := rp.now()
	if u := rp.sessions.get(value, now); u != nil {
		return u
	}
	s, err := rp.sealer(r.Context())
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
	if !rp.sessions.put(value, u) {
		return nil // logged out
	}
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
	if err != nil || u.Issuer != rp.cfg.Issuer || (!rp.now().Before(u.Expiry) && u.refreshToken == "") || rp.sessions.isRevoked(u.sid) {
		return nil
	}
	return u
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
		sess, _ := rp.cfg.SessionStore.New(r, rp.cfg.SessionName) // an undecodable old cookie is no error here
		if sess == nil {
			return errors.New("oidcrp: session store returned no session")
		}
		if !renew {
			// Never continue a session identifier the browser brought: that
			// would let a planted cookie fixate the session.
			sess.ID, sess.IsNew = "", true
		}
		sess.Values = map[any]any{sessionValueKey: u.encode()}
		sess.Options.HttpOnly, sess.Options.Secure, sess.Options.SameSite = true, rp.secure, http.SameSiteLaxMode
		sess.Options.Path = "/"
		sess.Options.MaxAge = 0 // a refreshable session outlives its ID token: a browser-session cookie
		if !rp.outlivesExpiry(u) {
			sess.Options.MaxAge = max(1, int(u.Expiry.Sub(rp.now()).Seconds()))
		}
		return sess.Save(r, w)
	}
	s, err := rp.sealer(r.Context())
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

// outlivesExpiry reports whether u's session may be refreshed past its
// Expiry, so its cookie must not expire with it.
func (rp *RP) outlivesExpiry(u *User) bool {
	return u.refreshToken != "" && rp.cfg.SessionLifetime == 0
}

// endSession clears the session cookie and revokes u's session.
func (rp *RP) endSession(w http.ResponseWriter, r *http.Request, u *User) {
	if u != nil {
		rp.sessions.revoke(u, rp.now())
	}
	if rp.cfg.SessionStore != nil {
		if sess, _ := rp.cfg.SessionStore.Get(r, rp.cfg.SessionName); sess != nil {
			delete(sess.Values, sessionValueKey)
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
