package oidcrp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/http"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// accessExpiry returns when an access token issued at now (the relying
// party's clock, as User.tokensAt) expires: expires_in after it, rather than
// x/oauth2's Expiry, which is on the wall clock.
func accessExpiry(tok *oauth2.Token, now time.Time) time.Time {
	if tok.ExpiresIn > 0 {
		return now.Add(time.Duration(tok.ExpiresIn) * time.Second)
	}
	return tok.Expiry
}

// refreshSkew refreshes access tokens a little before they expire: 30
// seconds, or a tenth of their lifetime when that is shorter.
func (u *User) refreshSkew() time.Duration {
	skew := 30 * time.Second
	if !u.tokensAt.IsZero() {
		skew = min(skew, u.accessExpiry.Sub(u.tokensAt)/10)
	}
	return max(skew, 0)
}

// refreshed refreshes u's tokens, writes the new session cookie and returns
// the new user, or nil (the session ends) if the provider refuses. A
// provider that cannot be asked leaves the session as it is while it lasts.
func (rp *RP) refreshed(w http.ResponseWriter, r *http.Request, u *User) *User {
	nu, err := rp.refreshSession(w, r, u)
	if err != nil {
		if errors.Is(err, ErrUnavailable) && r.Context().Err() == nil && rp.now().Before(u.Expiry) {
			return u // try again on a later request
		}
		return nil
	}
	return nu
}

// refreshSession refreshes u's tokens and writes the refreshed session
// back (a Set-Cookie on w, or the server-side record). Concurrent requests
// of a session share one refresh: providers that rotate refresh tokens
// accept each one once. It fails with an error wrapping ErrUnavailable when
// the provider could not be asked (the session stays), or ErrSessionEnded
// when the provider refused or the session ended meanwhile (its cookie is
// cleared on w).
func (rp *RP) refreshSession(w http.ResponseWriter, r *http.Request, u *User) (*User, error) {
	nu, err, first := rp.refreshes.do(r.Context(), u.sid, func(ctx context.Context) (*User, error) {
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), setupTimeout)
		defer cancel()
		nu, err := rp.refresh(ctx, u)
		if err == nil && rp.cfg.SessionStore == nil {
			// Before the refresh counts as done: a request of the session
			// that asks after this one must find the new tokens, since the
			// provider may refuse the old refresh token now. A logout
			// meanwhile still holds: the revocation check refuses nu too.
			if value := cookieValue(r, rp.cfg.SessionName); value != "" {
				rp.sessions.replace(value, nu)
			}
		}
		return nu, err
	})
	if err != nil && r.Context().Err() != nil {
		return nil, r.Context().Err() // the request went away
	}
	if err != nil {
		if !refused(err) {
			// The provider could not be asked: keep the session and try
			// again on a later request.
			if first {
				// Once per outage: every request of every session retries.
				rp.refreshFail.failed(rp.log, slog.LevelWarn, rp.now(), "oidcrp: refreshing sessions' tokens failed; will retry", err, "sub", u.Subject)
			}
			if errors.Is(err, ErrUnavailable) {
				return nil, err
			}
			return nil, fmt.Errorf("%w: refreshing the tokens: %w", ErrUnavailable, err)
		}
		if first {
			rp.log.Info("oidcrp: session ended: the provider refused to refresh its tokens", "sub", u.Subject, "err", err)
			if err := rp.endSessionEverywhere(r.Context(), u); err != nil {
				rp.log.Warn("oidcrp: the ended session is known to this process only", "err", err)
			}
		}
		rp.endSession(w, r, nil)
		return nil, fmt.Errorf("%w: the provider refused to refresh its tokens: %w", ErrSessionEnded, err)
	}
	if first {
		rp.refreshFail.ended(rp.log, rp.now(), "oidcrp: refreshing sessions' tokens works again")
	}
	if rp.revokedMeanwhile(r.Context(), u) {
		rp.endSession(w, r, nil) // a logout while the refresh was in flight wins
		return nil, fmt.Errorf("%w: it was logged out while its tokens were refreshed", ErrSessionEnded)
	}
	if err := rp.startSession(w, r, nu, true); errors.Is(err, errSessionGone) {
		rp.log.Info("oidcrp: session ended meanwhile: its server-side record was deleted during the refresh", "sub", u.Subject)
		rp.endSession(w, r, nil)
		return nil, fmt.Errorf("%w: %w", ErrSessionEnded, err)
	} else if err != nil {
		rp.log.Error("oidcrp: storing the refreshed session failed", "err", err)
		return nil, err
	}
	return nu, nil
}

// revokedMeanwhile reports whether u's session was ended, here or in
// another process, while its refresh was in flight: it reads the shared
// record first, so that the refreshed session is never stored over a
// logout.
func (rp *RP) revokedMeanwhile(ctx context.Context, u *User) bool {
	if rp.revocations.store != nil {
		if err := rp.revocations.sync(ctx); err != nil {
			rp.log.Warn("oidcrp: reading the revocation record before storing a refreshed session failed", "err", err)
		}
	}
	return rp.revocations.ended(u)
}

// sameAuthentication applies OpenID Connect Core §12.2 to an ID token from a
// refresh: same iss, sub and aud as the session's, iat present, and auth_time
// and nonce, when present, those of the original ID token (when the session
// still has it).
func sameAuthentication(u *User, idt *oidc.IDToken) error {
	bad := func(why string) error {
		return refusal(ReasonInvalidIDToken, "refreshed ID token "+why)
	}
	if idt.Subject != u.Subject || idt.Issuer != u.Issuer {
		return bad("names another subject or issuer")
	}
	if len(idt.Audience) != 1 || idt.IssuedAt.IsZero() {
		return bad("has extra audiences or no iat")
	}
	payload, err := jwtPayload(u.idToken)
	if u.idToken == "" || err != nil {
		return nil
	}
	var orig, now struct {
		AuthTime *int64 `json:"auth_time"`
		Nonce    string `json:"nonce"`
	}
	if json.Unmarshal(payload, &orig) != nil || idt.Claims(&now) != nil {
		return nil
	}
	if len(idt.Audience) == 1 && tokenAudience(u.idToken) != idt.Audience[0] {
		return bad("is for another audience")
	}
	if orig.AuthTime != nil && now.AuthTime != nil && *orig.AuthTime != *now.AuthTime {
		return bad("has another auth_time")
	}
	if now.Nonce != "" && now.Nonce != orig.Nonce {
		return bad("has another nonce")
	}
	return nil
}

// refused reports whether a refresh failed because the provider refused the
// grant or returned tokens that fail their checks, as opposed to failing to
// answer at all.
func refused(err error) bool {
	var re *oauth2.RetrieveError
	if errors.As(err, &re) {
		return re.Response != nil && re.Response.StatusCode >= 400 && re.Response.StatusCode < 500
	}
	var ae *AuthError
	return errors.As(err, &ae) && ae.Reason == ReasonInvalidIDToken
}

// refresh exchanges u's refresh token (RFC 6749 §6) and checks a returned ID
// token as OpenID Connect Core §12.2 requires: same issuer, subject and
// audience as the session's.
func (rp *RP) refresh(ctx context.Context, u *User) (*User, error) {
	c, err := rp.lc.client(ctx)
	if err != nil {
		return nil, err
	}
	ctx, end := rp.trace.span(ctx, opRefresh, c.creds.ClientID)
	nu, err := rp.doRefresh(c.context(ctx), c, u)
	end(err)
	return nu, err
}

func (rp *RP) doRefresh(ctx context.Context, c *client, u *User) (*User, error) {
	tctx := ctx // with the session's DPoP key, the request carries a proof (dpop.go)
	if u.dpop != nil {
		tctx = oidc.ClientContext(ctx, rp.dpopHTTPClient(c.http, u.dpop))
	}
	tok, err := c.oauth.TokenSource(tctx, &oauth2.Token{RefreshToken: u.refreshToken, Expiry: time.Unix(1, 0)}).Token()
	if err != nil {
		return nil, &AuthError{Reason: ReasonTokenExchange, Err: err}
	}
	nu := *u // same session id: a logout revokes every generation of the session
	nu.accessToken, nu.refreshToken, nu.tokensAt = tok.AccessToken, tok.RefreshToken, rp.now()
	nu.accessExpiry = accessExpiry(tok, nu.tokensAt)
	nu.tokenType = tok.Type()
	if raw, _ := tok.Extra("id_token").(string); raw != "" {
		raw, err := c.signedIDToken(raw) // the signed token, also kept as the logout hint
		if err != nil {
			return nil, err
		}
		idt, err := c.verifier.Verify(ctx, raw)
		if err != nil {
			return nil, &AuthError{Reason: ReasonInvalidIDToken, Err: err}
		}
		if err := sameAuthentication(u, idt); err != nil {
			return nil, err
		}
		if u.layered {
			nu.idToken = raw // its claims are the session's
		} else if u.idToken != "" {
			nu.idToken = raw // the logout hint
		}
		if rp.cfg.SessionLifetime == 0 {
			nu.Expiry = idt.Expiry
		}
	} else if rp.cfg.SessionLifetime == 0 {
		if tok.Expiry.IsZero() {
			return nil, errors.New("oidcrp: refresh response has neither an ID token nor an expiry")
		}
		nu.Expiry = tok.Expiry
	}
	return &nu, nil
}
