package oidcrp

import (
	"context"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"net/http"
	"time"

	"golang.org/x/oauth2"
)

// handleCallback completes a login: the authorization response is checked
// against the attempt's cookie (state, RFC 9207 iss), the code is exchanged
// with the PKCE verifier, the ID token is decrypted when the registration
// asks for encryption (encryption.go) and verified (signature, iss, aud, exp
// by go-oidc; nonce, iat, azp, sub and extra audiences here), userinfo is read,
// and a new session replaces the attempt.
func (rp *RP) handleCallback(w http.ResponseWriter, r *http.Request) {
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("Referrer-Policy", "no-referrer")
	ctx, end := rp.trace.span(r.Context(), opLogin, rp.clientID())
	r = r.WithContext(ctx)
	status, err := rp.callback(w, r)
	end(err)
	switch {
	case err == nil, status == 0: // done, or the login was restarted
	case status == http.StatusServiceUnavailable || status == http.StatusInternalServerError:
		rp.logRefused("oidcrp: login failed", err)
		rp.fail(w, r, status, err)
	default:
		rp.reject(w, r, status, err)
	}
}

// callback does the work of handleCallback. It returns the status of the
// error page to show, or 0 with a non-nil error when it already answered by
// restarting the login.
func (rp *RP) callback(w http.ResponseWriter, r *http.Request) (int, error) {
	if r.Method != http.MethodGet {
		w.Header().Set("Allow", http.MethodGet)
		return http.StatusMethodNotAllowed, refusal(ReasonBadRequest, "callback takes GET")
	}
	q := r.URL.Query()
	f, err := rp.takeFlow(w, r, q.Get("state"))
	if err != nil {
		return statusOf(err), err
	}
	c, err := rp.lc.client(r.Context())
	if err != nil {
		return http.StatusServiceUnavailable, err
	}
	if err := rp.checkResponseIssuer(c, f, q.Get("iss"), q.Has("iss")); err != nil {
		return http.StatusBadRequest, err
	}
	if code := q.Get("error"); code != "" {
		return http.StatusForbidden, &AuthError{Reason: ReasonProviderError, ErrorCode: truncate(code, 100), ErrorDescription: truncate(q.Get("error_description"), 300)}
	}
	if q.Get("code") == "" || len(q["code"]) != 1 {
		return http.StatusBadRequest, refusal(ReasonBadRequest, "no code in the authorization response")
	}
	if !f.madeFor(c.creds.ClientID) {
		// The client was replaced while the browser was away; its code is for the old one.
		return rp.restartLogin(w, r, f, refusal(ReasonInvalidClient, "the client was replaced during the login"))
	}
	u, err := rp.complete(r.Context(), c, f, q.Get("code"))
	if err != nil {
		var ae *AuthError
		if errors.As(err, &ae) && ae.Reason == ReasonInvalidClient && !f.Retried && rp.lc.rejected(r.Context(), c, ae) {
			return rp.restartLogin(w, r, f, err)
		}
		return statusOf(err), err
	}
	if err := rp.startSession(w, r, u, false); err != nil {
		return http.StatusInternalServerError, fmt.Errorf("oidcrp: store the session: %w", err)
	}
	rp.unanswered.Store(0)
	rp.log.Info("oidcrp: login completed", "sub", u.Subject, "client_id", c.creds.ClientID)
	http.Redirect(w, r, rp.returnPath(r, f.ReturnTo), http.StatusSeeOther)
	return 0, nil
}

// takeFlow finds, opens and deletes the cookie of the attempt named by state.
func (rp *RP) takeFlow(w http.ResponseWriter, r *http.Request, state string) (*flow, error) {
	bad := func(why string) error { return refusal(ReasonStateMismatch, why) }
	if len(state) != 43 {
		return nil, bad("missing or malformed state")
	}
	name := rp.loginCookieName(state)
	ck, err := r.Cookie(name)
	if err != nil {
		return nil, bad("no login in progress for this state in this browser (expired, finished, or started elsewhere)")
	}
	http.SetCookie(w, rp.cookie(name, "", "/", time.Time{})) // one use only
	s, err := rp.keys.sealer(r.Context())
	if err != nil {
		return nil, err
	}
	pt, err := s.open("login", rp.bind(name), ck.Value)
	if err != nil {
		return nil, bad("login cookie does not authenticate")
	}
	f, err := decodeFlow(pt)
	if err != nil {
		return nil, bad("login cookie is malformed")
	}
	if subtle.ConstantTimeCompare([]byte(f.State), []byte(state)) != 1 {
		return nil, bad("state does not match the login cookie")
	}
	if age := rp.now().Sub(time.Unix(f.Created, 0)); age > flowLifetime || age < -time.Minute {
		return nil, bad("login attempt expired")
	}
	if f.issuer != tag("issuer", rp.cfg.Issuer) {
		return nil, refusal(ReasonIssuerMismatch, "login was started with another issuer")
	}
	f.Issuer = rp.cfg.Issuer
	return f, nil
}

// checkResponseIssuer applies RFC 9207 §2.4: an iss parameter must equal the
// issuer the request went to, and is required from a provider that
// advertises it.
func (rp *RP) checkResponseIssuer(c *client, f *flow, iss string, present bool) error {
	switch {
	case present && iss != f.Issuer:
		return refusal(ReasonIssuerMismatch, fmt.Sprintf("authorization response from %q, expected %q", truncate(iss, 200), f.Issuer))
	case !present && c.disc.AuthorizationResponseIssSupported:
		return refusal(ReasonIssuerMismatch, "authorization response lacks iss though the provider advertises it")
	}
	return nil
}

// maxIssuedAtSkew is how far ahead of the relying party's clock an ID
// token's iat may be: more means the token (or the provider's clock) cannot
// be trusted.
const maxIssuedAtSkew = 5 * time.Minute

// complete exchanges the code and builds the user from verified tokens.
func (rp *RP) complete(ctx context.Context, c *client, f *flow, code string) (*User, error) {
	var key *dpopKey
	if f.DPoP {
		key = f.dpopKey()
	}
	tok, c, err := rp.exchange(ctx, c, code, f.Verifier, key)
	if err != nil {
		return nil, err
	}
	raw, _ := tok.Extra("id_token").(string)
	if raw == "" {
		return nil, refusal(ReasonInvalidIDToken, "token response has no id_token")
	}
	if raw, err = c.signedIDToken(raw); err != nil {
		return nil, err
	}
	octx := c.context(ctx)
	idt, err := c.verifier.Verify(octx, raw)
	if err != nil {
		return nil, &AuthError{Reason: ReasonInvalidIDToken, Err: err}
	}
	rp.logoutKids.Store(jwtKid(raw), struct{}{}) // the provider's key: its logout tokens are not rate-limited
	// go-oidc checked signature, iss, aud and exp; the rest is ours (OIDC Core §3.1.3.7).
	switch {
	case subtle.ConstantTimeCompare([]byte(idt.Nonce), []byte(f.Nonce)) != 1:
		return nil, refusal(ReasonInvalidIDToken, "ID token nonce does not match the login attempt")
	case idt.Subject == "" || len(idt.Subject) > 255:
		return nil, refusal(ReasonInvalidIDToken, "ID token has no valid sub")
	case idt.IssuedAt.IsZero():
		return nil, refusal(ReasonInvalidIDToken, "ID token has no iat")
	case idt.IssuedAt.After(rp.now().Add(maxIssuedAtSkew)):
		return nil, refusal(ReasonInvalidIDToken, "ID token was issued in the future (iat)")
	case len(idt.Audience) != 1:
		return nil, refusal(ReasonInvalidIDToken, fmt.Sprintf("ID token has untrusted extra audiences %q", idt.Audience))
	}
	var claims map[string]any // the ID token's claims, decoded only when needed
	var azp, opSID any
	if (c.disc.UserinfoEndpoint != "" && !rp.cfg.SkipUserInfo) || rp.cfg.ClaimFilter != nil {
		if err := idt.Claims(&claims); err != nil {
			return nil, &AuthError{Reason: ReasonInvalidIDToken, Err: err}
		}
		azp, opSID = claims["azp"], claims["sid"]
	} else {
		var a struct {
			Azp any `json:"azp"`
			Sid any `json:"sid"`
		}
		if err := idt.Claims(&a); err != nil {
			return nil, &AuthError{Reason: ReasonInvalidIDToken, Err: err}
		}
		azp, opSID = a.Azp, a.Sid
	}
	if azp != nil {
		// OIDC Core §3.1.3.7 (5): an azp, when present, must be this client.
		if s, _ := azp.(string); s != c.creds.ClientID {
			return nil, refusal(ReasonInvalidIDToken, "ID token was issued to another authorized party (azp)")
		}
	}
	extras := map[string]any{} // userinfo claims the ID token lacks
	if c.disc.UserinfoEndpoint != "" && !rp.cfg.SkipUserInfo {
		uctx, end := rp.trace.span(ctx, opUserInfo, c.creds.ClientID)
		all := map[string]any{}
		body, err := rp.userInfo(uctx, c, tok, key)
		if err == nil {
			err = json.Unmarshal(body, &all)
		}
		if sub, _ := all["sub"].(string); err == nil && sub != idt.Subject {
			// OIDC Core §5.3.2: the response must not be used.
			err = errors.New("userinfo sub differs from the ID token's")
		}
		end(err)
		if err != nil {
			return nil, &AuthError{Reason: ReasonUserInfo, Err: err}
		}
		for k, v := range all {
			if _, ok := claims[k]; !ok {
				extras[k] = v
			}
		}
	}
	now := rp.now()
	u := &User{Issuer: idt.Issuer, Subject: idt.Subject, Expiry: idt.Expiry, idToken: raw, sid: randomString()[:22], since: now}
	u.opSID, _ = opSID.(string) // the provider's session, named by back- and front-channel logout
	if d := idt.Expiry.Sub(now); d > time.Duration(rp.longestSeen.Load()) {
		rp.longestSeen.Store(int64(d)) // how long a logout must be remembered
	}
	if rp.cfg.KeepTokens {
		u.accessToken, u.refreshToken, u.tokensAt = tok.AccessToken, tok.RefreshToken, rp.now()
		u.accessExpiry = accessExpiry(tok, u.tokensAt)
		u.tokenType, u.dpop = tok.Type(), key
	}
	if rp.cfg.SessionLifetime > 0 {
		u.Expiry = rp.now().Add(rp.cfg.SessionLifetime)
	}
	if rp.cfg.ClaimFilter == nil {
		// The ID token holds its claims: keep only what userinfo added.
		u.layered = true
		if len(extras) > 0 {
			u.claims, _ = json.Marshal(extras)
		}
		return u, nil
	}
	maps.Copy(claims, extras)
	rp.cfg.ClaimFilter(claims)
	claims["iss"], claims["sub"] = idt.Issuer, idt.Subject
	u.claims, _ = json.Marshal(claims)
	return u, nil
}

// exchange redeems the code at the token endpoint. When the provider
// refuses the client's form-encoded HTTP Basic credentials, it tries the
// other ways of sending them before concluding anything about the client,
// and settles on the one that works. It returns the client that succeeded.
// With a DPoP key, the requests carry proofs made with it (dpop.go).
func (rp *RP) exchange(ctx context.Context, c *client, code, verifier string, key *dpopKey) (*oauth2.Token, *client, error) {
	try := func(c *client) (*oauth2.Token, error) {
		xctx, end := rp.trace.span(ctx, opTokenExchange, c.creds.ClientID)
		tok, err := c.oauth.Exchange(rp.providerContext(xctx, c, key), code, oauth2.VerifierOption(verifier))
		end(err)
		return tok, err
	}
	tok, err := try(c)
	if invalidClient(err) != nil {
		for _, alt := range rp.lc.encodings(c) {
			tok2, err2 := try(alt)
			if err2 == nil {
				rp.lc.settle(ctx, c, alt)
				return tok2, alt, nil
			}
			if invalidClient(err2) == nil {
				err = err2
				break
			}
		}
	}
	if re := invalidClient(err); re != nil {
		return nil, c, &AuthError{Reason: ReasonInvalidClient, ErrorCode: re.ErrorCode, ErrorDescription: truncate(re.ErrorDescription, 300), Err: err}
	}
	if err != nil {
		return nil, c, &AuthError{Reason: ReasonTokenExchange, Err: err}
	}
	return tok, c, nil
}

// invalidClient returns the token endpoint's error when it refused the
// client (RFC 6749 §5.2), and nil otherwise.
func invalidClient(err error) *oauth2.RetrieveError {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) && (re.ErrorCode == "invalid_client" || re.ErrorCode == "unauthorized_client") {
		return re
	}
	return nil
}

// restartLogin starts the attempt f again, once, after the provider rejected
// a client that has now been replaced. The callback reports cause.
func (rp *RP) restartLogin(w http.ResponseWriter, r *http.Request, f *flow, cause error) (int, error) {
	if f.Retried {
		return http.StatusBadGateway, cause
	}
	rp.log.Warn("oidcrp: restarting the login with the renewed client", "err", cause)
	rp.loginAttempt(w, r, f.ReturnTo, true)
	return 0, cause
}
