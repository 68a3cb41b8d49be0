package oidcrp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"golang.org/x/oauth2"
)

// Pushed authorization requests (RFC 9126): the authorization request's
// parameters are POSTed to the provider's pushed_authorization_request_endpoint,
// with the client authenticated as at the token endpoint, and the browser is
// sent to the authorization endpoint with only client_id and the request_uri
// the provider returned.

// ReasonPushedAuthorization is the [Reason] of a login that could not start
// because the provider's pushed authorization request endpoint refused the
// request or failed (RFC 9126).
const ReasonPushedAuthorization Reason = "pushed_authorization"

// maxRequestURI bounds the request_uri a provider may return: it goes into
// the browser's redirect.
const maxRequestURI = 2048

// checkPAR fails a setup that cannot send the authorization requests the
// provider or the configuration asks for: PAR required, by the provider
// (require_pushed_authorization_requests) or by Config.PushedAuthorization,
// without a usable pushed_authorization_request_endpoint.
func checkPAR(cfg *Config, d *discovery) error {
	if d.PushedAuthorizationRequestEndpoint != "" {
		return nil
	}
	switch {
	case d.RequirePushedAuthorizationRequests:
		return fmt.Errorf("oidcrp: provider %s requires pushed authorization requests (require_pushed_authorization_requests) but advertises no usable pushed_authorization_request_endpoint; logins cannot start", d.Issuer)
	case cfg.PushedAuthorization:
		return fmt.Errorf("oidcrp: Config.PushedAuthorization is set but provider %s advertises no usable pushed_authorization_request_endpoint", d.Issuer)
	}
	return nil
}

// usePAR reports whether c's authorization requests are pushed: the
// provider requires it of every client, or of this one in its registration
// (RFC 9126 §6), or the configuration asks for it.
func (c *client) usePAR(cfg *Config) bool {
	return c.disc.PushedAuthorizationRequestEndpoint != "" &&
		(c.disc.RequirePushedAuthorizationRequests || cfg.PushedAuthorization ||
			c.creds.Metadata.Extra["require_pushed_authorization_requests"] == true)
}

// authorizationURL returns where to send the browser for the attempt f,
// and the client it was made for. With PAR, the request is pushed first; a
// client the PAR endpoint refuses (invalid_client) is reported to the
// lifecycle and, when that replaced it, the request is pushed once more
// with the new client (then f is marked as retried).
func (rp *RP) authorizationURL(ctx context.Context, c *client, f *flow) (string, *client, error) {
	for {
		opts := []oauth2.AuthCodeOption{oidcNonce(f.Nonce), oauth2.S256ChallengeOption(f.Verifier)}
		if f.DPoP = c.useDPoP(rp.cfg); f.DPoP {
			jkt, err := f.dpopKey().thumbprint()
			if err != nil {
				return "", c, err
			}
			opts = append(opts, oauth2.SetAuthURLParam("dpop_jkt", jkt)) // RFC 9449 §10
		}
		target := c.oauth.AuthCodeURL(f.State, opts...)
		params := authRequestParams(c, target)
		if c.useJAR(rp.cfg) { // jar.go
			var err error
			if params, err = rp.requestObject(c, params); err != nil {
				return "", c, err
			}
			target = withQuery(c.disc.AuthorizationEndpoint, params)
		}
		if !c.usePAR(rp.cfg) {
			return target, c, nil
		}
		requestURI, used, err := rp.pushAuthorization(ctx, c, params)
		if err == nil {
			return redirectWithRequestURI(c.disc.AuthorizationEndpoint, used.creds.ClientID, requestURI), used, nil
		}
		var ae *AuthError
		if f.Retried || !errors.As(err, &ae) || (ae.ErrorCode != "invalid_client" && ae.ErrorCode != "unauthorized_client") ||
			!rp.lc.rejected(ctx, c, err) {
			return "", c, err
		}
		rp.log.Warn("oidcrp: pushing the authorization request again with the renewed client", "err", err)
		f.Retried = true
		if c, err = rp.lc.client(ctx); err != nil {
			return "", c, err
		}
	}
}

// authRequestParams returns the authorization request's parameters as
// x/oauth2 put them in target, without those of the authorization
// endpoint's own query.
func authRequestParams(c *client, target string) url.Values {
	u, _ := url.Parse(target)
	params := u.Query()
	if ep, err := url.Parse(c.disc.AuthorizationEndpoint); err == nil {
		for k := range ep.Query() {
			params.Del(k)
		}
	}
	return params
}

// redirectWithRequestURI is the authorization endpoint with only client_id
// and request_uri added (RFC 9126 §4), after its own query if it has one.
func redirectWithRequestURI(endpoint, clientID, requestURI string) string {
	sep := "?"
	if strings.Contains(endpoint, "?") {
		sep = "&"
	}
	return endpoint + sep + url.Values{"client_id": {clientID}, "request_uri": {requestURI}}.Encode()
}

// pushAuthorization pushes params for c. When the endpoint refuses c's
// form-encoded HTTP Basic credentials, it tries the other ways of sending
// them, as the code exchange does ([lifecycle.encodings]), and settles on
// the one that works. It returns the request_uri and the client that
// pushed it.
func (rp *RP) pushAuthorization(ctx context.Context, c *client, params url.Values) (string, *client, error) {
	uri, err := rp.push(ctx, c, params)
	if !parInvalidClient(err) {
		return uri, c, err
	}
	for _, alt := range rp.lc.encodings(c) {
		uri2, err2 := rp.push(ctx, alt, params)
		if err2 == nil {
			rp.lc.settle(ctx, c, alt)
			return uri2, alt, nil
		}
		if !parInvalidClient(err2) {
			return "", c, err2
		}
	}
	return "", c, err
}

func parInvalidClient(err error) bool {
	var ae *AuthError
	return errors.As(err, &ae) && ae.Reason == ReasonPushedAuthorization &&
		(ae.ErrorCode == "invalid_client" || ae.ErrorCode == "unauthorized_client")
}

// parError says how the PAR endpoint failed: status is the HTTP status of
// its answer, 0 when none came.
type parError struct {
	status int
	msg    string
}

func (e *parError) Error() string { return e.msg }

// push POSTs params to c's PAR endpoint, authenticated as c authenticates at
// the token endpoint, and returns the request_uri. It is traced as "par".
func (rp *RP) push(ctx context.Context, c *client, params url.Values) (_ string, err error) {
	ctx, end := rp.trace.span(ctx, opPAR, c.creds.ClientID)
	defer func() { end(err) }()
	endpoint := c.disc.PushedAuthorizationRequestEndpoint
	fail := func(status int, code, desc, format string, args ...any) error {
		return &AuthError{Reason: ReasonPushedAuthorization, ErrorCode: truncate(code, 100), ErrorDescription: truncate(desc, 300),
			Err: &parError{status: status, msg: "pushed authorization request to " + endpoint + ": " + fmt.Sprintf(format, args...)}}
	}
	req, err := c.authenticatedPost(ctx, endpoint, params)
	if err != nil {
		return "", fail(0, "", "", "%v", err)
	}
	sent := rp.now()
	resp, err := c.http.Do(req)
	if err != nil {
		return "", fail(0, "", "", "%v", err)
	}
	defer resp.Body.Close()
	var body struct {
		RequestURI       string `json:"request_uri"`
		ExpiresIn        any    `json:"expires_in"`
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	raw, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err == nil {
		err = json.Unmarshal(raw, &body)
	}
	if resp.StatusCode < 200 || resp.StatusCode > 299 {
		return "", fail(resp.StatusCode, body.Error, body.ErrorDescription, "HTTP %d", resp.StatusCode)
	}
	if err != nil {
		return "", fail(resp.StatusCode, "", "", "unreadable answer: %v", err)
	}
	if body.RequestURI == "" || len(body.RequestURI) > maxRequestURI {
		return "", fail(resp.StatusCode, "", "", "the answer has no usable request_uri")
	}
	// The request_uri is used at once: it must still be valid now.
	lifetime, ok := seconds(body.ExpiresIn)
	if !ok || lifetime <= 0 {
		return "", fail(resp.StatusCode, "", "", "the answer has no positive expires_in (RFC 9126 §2.2)")
	}
	if took := rp.now().Sub(sent); took >= lifetime {
		return "", fail(resp.StatusCode, "", "", "the request_uri expired (expires_in %v) before it could be used (%v)", lifetime, took.Round(time.Millisecond))
	}
	return body.RequestURI, nil
}

// seconds reads a JSON number of seconds, or a string holding one.
func seconds(v any) (time.Duration, bool) {
	var f float64
	switch v := v.(type) {
	case float64:
		f = v
	case string:
		n, err := strconv.ParseFloat(v, 64)
		if err != nil {
			return 0, false
		}
		f = n
	default:
		return 0, false
	}
	if f > float64(365*24*3600) {
		f = 365 * 24 * 3600
	}
	return time.Duration(f * float64(time.Second)), true
}

// loginStartStatus is the status of a login that could not start: 502 when
// the PAR endpoint refused the request, 503 when it could not be reached or
// failed on its side, and when the client or keys are unavailable.
func loginStartStatus(err error) int {
	var pe *parError
	if errors.As(err, &pe) && pe.status != 0 && pe.status < 500 {
		return http.StatusBadGateway
	}
	return http.StatusServiceUnavailable
}
