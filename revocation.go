package oidcrp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"time"
)

// revocationTimeout bounds the revocation of a session's tokens at logout.
const revocationTimeout = 5 * time.Second

// revokeTokens revokes the tokens of a session that was logged out at the
// provider's revocation endpoint (RFC 7009), when it has one: the refresh
// token, which revokes the grant at most providers, then the access token.
// It is best effort and does not hold up the logout: it runs in the
// background, within revocationTimeout, and a failure is logged. The
// session has ended here whatever the provider answers.
func (rp *RP) revokeTokens(ctx context.Context, u *User) {
	if u == nil || (u.refreshToken == "" && u.accessToken == "") {
		return
	}
	ctx = context.WithoutCancel(ctx) // the logout's response does not wait
	go func() {
		ctx, cancel := context.WithTimeout(ctx, revocationTimeout)
		defer cancel()
		c, err := rp.lc.client(ctx)
		if err != nil || c.disc.RevocationEndpoint == "" {
			return // the provider is down (logged elsewhere), or revokes nothing
		}
		if err := endpointOK(rp.cfg.Issuer, c.disc.RevocationEndpoint); err != nil {
			rp.log.Debug("oidcrp: not revoking tokens at an unusable revocation_endpoint", "err", err)
			return
		}
		ctx, end := rp.trace.span(ctx, opRevocation, c.creds.ClientID)
		var errs []error
		for _, t := range []struct{ token, hint string }{{u.refreshToken, "refresh_token"}, {u.accessToken, "access_token"}} {
			if t.token != "" {
				if err := rp.revoke(ctx, c, t.token, t.hint); err != nil {
					errs = append(errs, fmt.Errorf("%s: %w", t.hint, err))
				}
			}
		}
		err = errors.Join(errs...)
		end(err)
		if err != nil {
			rp.log.Warn("oidcrp: revoking the tokens of a logged-out session failed; the session has ended here all the same", "sub", u.Subject, "err", err)
			return
		}
		rp.log.Debug("oidcrp: revoked the tokens of a logged-out session", "sub", u.Subject)
	}()
}

// revoke sends one RFC 7009 revocation request, the client authenticating
// as it does at the token endpoint.
func (rp *RP) revoke(ctx context.Context, c *client, token, hint string) error {
	form := url.Values{"token": {token}, "token_type_hint": {hint}}
	req, err := c.authenticatedPost(ctx, c.disc.RevocationEndpoint, form)
	if err != nil {
		return err
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return err
	}
	defer resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		return nil
	}
	var e struct {
		Error string `json:"error"`
	}
	body, _ := io.ReadAll(io.LimitReader(resp.Body, 4096))
	_ = json.Unmarshal(body, &e)
	if e.Error != "" {
		return fmt.Errorf("the revocation endpoint answered HTTP %d %s", resp.StatusCode, truncate(e.Error, 100))
	}
	return fmt.Errorf("the revocation endpoint answered HTTP %d", resp.StatusCode)
}
