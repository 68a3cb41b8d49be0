package oidcrp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"mime"
	"net/http"
	"net/url"
	"strings"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
)

// OpenID Connect Back-Channel Logout 1.0: the provider POSTs a logout token
// to the backchannel_logout_uri registered for this client
// (Config.BackchannelLogoutPath on RedirectURL's origin), and every session
// it names ends in every process that shares the store.

const (
	// backchannelLogoutEvent is the member of a logout token's "events"
	// claim that makes it one (§2.4).
	backchannelLogoutEvent = "http://schemas.openid.net/event/backchannel-logout"
	// maxLogoutTokenAge is how long after its iat a logout token is
	// accepted, and so how long its jti is remembered to refuse a replay.
	maxLogoutTokenAge = time.Hour
	// maxLogoutRequestBytes caps the body of a back-channel logout request.
	maxLogoutRequestBytes = 64 << 10
	// Logout tokens signed with a key id not seen in a valid one before: at
	// most newKidBurst at once, then one per newKidEvery.
	newKidBurst = 10
	newKidEvery = time.Second
)

// BackchannelLogoutHandler returns a handler for the provider's back-channel
// logout requests (OpenID Connect Back-Channel Logout 1.0), for applications
// that route Config.BackchannelLogoutPath themselves; [RP.Require],
// [RP.Optional] and the RP as a handler answer that path already. Mount it
// where the provider's POSTs to the registered backchannel_logout_uri
// (BackchannelLogoutPath on RedirectURL's origin) arrive, and let them
// through without a session, CSRF protection or a login: the provider calls
// it directly, not a browser.
//
// It validates the logout token as §2.6 asks: signed with the provider's
// keys and the registered ID token algorithm (never unsigned), this
// provider's iss, an aud containing the client_id, iat (within an hour),
// exp when present, a jti not seen before (remembered through the store, so
// a replay to another replica is refused too), the back-channel logout event,
// sid or sub, and no nonce; its typ, when present, must be logout+jwt. A
// token with sid ends every session started in that provider session; one
// with only sub ends every session of that subject at this provider (under
// [Tenants], in the tenant only). It answers 200 with "Cache-Control:
// no-store", 400 with a JSON error for a request it refuses, or 503 when it
// cannot check the token now (the provider or the store is unavailable).
func (rp *RP) BackchannelLogoutHandler() http.Handler {
	return http.HandlerFunc(rp.handleBackchannelLogout)
}

// logoutError is a refused back-channel or front-channel logout request.
type logoutError struct {
	status int
	code   string // OAuth-style error code
	why    string
}

func (e *logoutError) Error() string { return "oidcrp: logout request refused: " + e.why }

func invalidLogout(format string, args ...any) *logoutError {
	return &logoutError{status: http.StatusBadRequest, code: "invalid_request", why: fmt.Sprintf(format, args...)}
}

func (rp *RP) handleBackchannelLogout(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeLogoutError(w, &logoutError{status: http.StatusMethodNotAllowed, code: "invalid_request", why: "back-channel logout takes POST"})
		return
	}
	ctx, end := rp.trace.span(r.Context(), opBackchannelLogout, rp.clientID())
	err := rp.backchannelLogout(ctx, w, r)
	end(err)
	if err != nil {
		var le *logoutError
		if !errors.As(err, &le) {
			le = &logoutError{status: http.StatusServiceUnavailable, code: "temporarily_unavailable", why: err.Error()}
			if d, ok := retryAfter(err); ok {
				w.Header().Set("Retry-After", fmt.Sprint(int(d.Seconds()+0.999)))
			}
		}
		rp.log.Warn("oidcrp: back-channel logout refused", "status", le.status, "reason", le.why)
		writeLogoutError(w, le)
		return
	}
	w.WriteHeader(http.StatusOK)
}

// writeLogoutError answers a refused back-channel logout request (§2.8).
func writeLogoutError(w http.ResponseWriter, e *logoutError) {
	b, _ := json.Marshal(map[string]string{"error": e.code, "error_description": truncate(e.why, 200)})
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(e.status)
	_, _ = w.Write(b)
}

// backchannelLogout validates the request's logout token and ends what it
// names.
func (rp *RP) backchannelLogout(ctx context.Context, w http.ResponseWriter, r *http.Request) error {
	if mt, _, err := mime.ParseMediaType(r.Header.Get("Content-Type")); err != nil || mt != "application/x-www-form-urlencoded" {
		return invalidLogout("the request is not application/x-www-form-urlencoded")
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxLogoutRequestBytes)
	if err := r.ParseForm(); err != nil {
		return invalidLogout("unreadable form: %v", err)
	}
	raw := r.PostForm["logout_token"]
	if len(raw) != 1 || raw[0] == "" {
		return invalidLogout("the request needs exactly one logout_token")
	}
	c, err := rp.lc.client(ctx)
	if err != nil {
		return err
	}
	lt, err := rp.verifyLogoutToken(ctx, c, raw[0])
	if err != nil {
		return err
	}

	// §2.6 step 7: a jti seen before, here or, through the store, in
	// another process, is a replay.
	rp.revocations.refresh(ctx)
	now := rp.now()
	used := Revocation{Key: revocationKey("jti", rp.tenant, rp.cfg.Issuer, lt.jti), At: now, Until: later(now, lt.iat).Add(maxLogoutTokenAge)}
	if !rp.revocations.claim(used) {
		return invalidLogout("the logout token was used before (jti)")
	}

	if lt.sid != "" {
		err = rp.endProviderSession(ctx, lt.sid)
		rp.log.Info("oidcrp: back-channel logout ended the provider session's sessions", "sub", lt.sub)
	} else {
		err = rp.EndSessions(ctx, lt.sub)
	}
	if err := errors.Join(err, rp.revocations.add(ctx, used)); err != nil {
		rp.log.Error("oidcrp: the back-channel logout holds in this process only", "err", err)
	}
	return nil
}

// jwtKid returns the kid in the header of a compact JWS, or "".
func jwtKid(raw string) string {
	head, _, _ := strings.Cut(raw, ".")
	b, err := base64.RawURLEncoding.DecodeString(head)
	if err != nil {
		return ""
	}
	var h struct {
		Kid string `json:"kid"`
	}
	_ = json.Unmarshal(b, &h)
	return h.Kid
}

// logoutToken is what a valid logout token says.
type logoutToken struct {
	sid, sub, jti string
	iat           time.Time
}

// verifyLogoutToken validates a logout token as Back-Channel Logout 1.0
// §2.6 asks.
func (rp *RP) verifyLogoutToken(ctx context.Context, c *client, raw string) (*logoutToken, error) {
	if strings.Count(raw, ".") != 2 {
		// Step 1: an encrypted token would be decrypted with keys this
		// client never registered.
		return nil, invalidLogout("the logout token is not a signed JWT (JWS compact serialization)")
	}
	var hdr struct {
		Alg string `json:"alg"`
		Typ string `json:"typ"`
		Kid string `json:"kid"`
	}
	hb, err := base64.RawURLEncoding.DecodeString(raw[:strings.IndexByte(raw, '.')])
	if err != nil || json.Unmarshal(hb, &hdr) != nil {
		return nil, invalidLogout("the logout token's header is malformed")
	}
	// §2.4: explicitly typed logout+jwt, or untyped for compatibility;
	// another type (an ID token, an access token) is not a logout token.
	if typ := strings.TrimPrefix(strings.ToLower(hdr.Typ), "application/"); hdr.Typ != "" && typ != "logout+jwt" {
		return nil, invalidLogout("the logout token's typ is %q, not logout+jwt", truncate(hdr.Typ, 40))
	}
	// Step 2: signed as the client's ID tokens are, never unsigned. Step 3:
	// iss and aud as for ID tokens; exp and iat are checked below.
	alg := c.creds.Metadata.IDTokenSignedResponseAlg
	if alg == "" || alg == "none" {
		alg = oidc.RS256
	}
	if strings.EqualFold(hdr.Alg, "none") {
		return nil, invalidLogout("the logout token is unsigned (alg none)")
	}
	v := c.provider.Verifier(&oidc.Config{ClientID: c.creds.ClientID, SupportedSigningAlgs: []string{alg}, SkipExpiryCheck: true, Now: rp.now})
	// A key id not seen in a valid logout token before makes go-oidc fetch
	// the provider's keys again: bound how often strangers can cause that.
	_, known := rp.logoutKids.Load(hdr.Kid)
	if !known && !rp.newKids.allow(rp.now(), newKidBurst, newKidEvery) {
		return nil, &logoutError{status: http.StatusTooManyRequests, code: "invalid_request", why: "too many logout tokens signed with unknown keys"}
	}
	t, err := v.Verify(c.context(ctx), raw)
	if err != nil {
		return nil, invalidLogout("%v", err)
	}
	if !known {
		rp.logoutKids.Store(hdr.Kid, struct{}{})
	}
	var claims map[string]json.RawMessage
	if err := t.Claims(&claims); err != nil {
		return nil, invalidLogout("the logout token's claims: %v", err)
	}
	lt := &logoutToken{sub: t.Subject, iat: t.IssuedAt}
	now := rp.now()
	switch {
	case t.IssuedAt.IsZero():
		return nil, invalidLogout("the logout token has no iat")
	case t.IssuedAt.After(now.Add(maxIssuedAtSkew)):
		return nil, invalidLogout("the logout token was issued in the future (iat)")
	case t.IssuedAt.Before(now.Add(-maxLogoutTokenAge)):
		return nil, invalidLogout("the logout token was issued more than %v ago (iat)", maxLogoutTokenAge)
	case !t.Expiry.IsZero() && !now.Before(t.Expiry):
		return nil, invalidLogout("the logout token expired (exp)")
	}
	if j, ok := claims["jti"]; !ok || json.Unmarshal(j, &lt.jti) != nil || lt.jti == "" {
		return nil, invalidLogout("the logout token has no jti")
	}
	// Step 4: the events claim has the back-channel logout event, an object.
	var events map[string]json.RawMessage
	if e, ok := claims["events"]; !ok || json.Unmarshal(e, &events) != nil || events == nil {
		return nil, invalidLogout("the logout token has no events object")
	}
	if ev, ok := events[backchannelLogoutEvent]; !ok || !strings.HasPrefix(strings.TrimSpace(string(ev)), "{") {
		return nil, invalidLogout("the logout token's events lack the back-channel logout event object")
	}
	// Step 5: sid, sub or both.
	if s, ok := claims["sid"]; ok && (json.Unmarshal(s, &lt.sid) != nil || lt.sid == "") {
		return nil, invalidLogout("the logout token's sid is not a string")
	}
	if _, ok := claims["sub"]; ok && (lt.sub == "" || len(lt.sub) > 255) {
		return nil, invalidLogout("the logout token's sub is not valid")
	}
	if lt.sid == "" && lt.sub == "" {
		return nil, invalidLogout("the logout token has neither sid nor sub")
	}
	// Step 6: no nonce, which would make it usable as an ID token.
	if _, ok := claims["nonce"]; ok {
		return nil, invalidLogout("the logout token has a nonce")
	}
	return lt, nil
}

// refresh brings the view up to date with the store now, rather than at
// the next poll, when there is a store to read.
func (v *revocations) refresh(ctx context.Context) {
	if v.store == nil {
		return
	}
	ctx, cancel := context.WithTimeout(ctx, revocationWait)
	defer cancel()
	if err := v.sync(ctx); err != nil {
		v.log.Warn("oidcrp: reading the revocation record failed; checking this process's view only", "err", err)
	}
}

// claim records e in this process unless a live entry under its key is
// there already, and reports whether it did: of two identical requests,
// one claims.
func (v *revocations) claim(e Revocation) bool {
	v.mu.Lock()
	defer v.mu.Unlock()
	if old, ok := v.entries[e.Key]; ok && old.Until.After(v.now()) {
		return false
	}
	v.merge(e) // no session has this key: the generation stays
	return true
}

// redirectOrigin returns the scheme and host of RedirectURL, which New
// checked.
func redirectOrigin(redirectURL string) string {
	u, err := url.Parse(redirectURL)
	if err != nil {
		return ""
	}
	return u.Scheme + "://" + u.Host
}
