package oidcrp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"strings"
)

// discovery is the part of the provider metadata (OpenID Connect Discovery
// 1.0 §3, RFC 8414) the relying party uses.
type discovery struct {
	Issuer                            string   `json:"issuer"`
	AuthorizationEndpoint             string   `json:"authorization_endpoint"`
	TokenEndpoint                     string   `json:"token_endpoint"`
	UserinfoEndpoint                  string   `json:"userinfo_endpoint"`
	JWKSURI                           string   `json:"jwks_uri"`
	RegistrationEndpoint              string   `json:"registration_endpoint"`
	EndSessionEndpoint                string   `json:"end_session_endpoint"`
	RevocationEndpoint                string   `json:"revocation_endpoint"` // RFC 7009, RFC 8414 §2
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	AuthorizationResponseIssSupported bool     `json:"authorization_response_iss_parameter_supported"`

	// RFC 9126 §5: pushed authorization requests (par.go).
	PushedAuthorizationRequestEndpoint string `json:"pushed_authorization_request_endpoint"`
	RequirePushedAuthorizationRequests bool   `json:"require_pushed_authorization_requests"`

	// RFC 9101 §10.5 and OIDC Discovery §3: signed request objects (jar.go).
	RequestObjectSigningAlgValuesSupported []string `json:"request_object_signing_alg_values_supported"`
	RequireSignedRequestObject             bool     `json:"require_signed_request_object"`

	// OIDC Discovery §3: client assertions and encrypted responses (auth.go,
	// encryption.go).
	TokenEndpointAuthSigningAlgValuesSupported []string `json:"token_endpoint_auth_signing_alg_values_supported"`
	IDTokenEncryptionAlgValuesSupported        []string `json:"id_token_encryption_alg_values_supported"`
	IDTokenEncryptionEncValuesSupported        []string `json:"id_token_encryption_enc_values_supported"`
	UserinfoEncryptionAlgValuesSupported       []string `json:"userinfo_encryption_alg_values_supported"`
	UserinfoEncryptionEncValuesSupported       []string `json:"userinfo_encryption_enc_values_supported"`

	// RFC 9449 §5.1: DPoP (dpop.go).
	DPoPSigningAlgValuesSupported []string `json:"dpop_signing_alg_values_supported"`

	// Back-Channel Logout 1.0 §2.1 and Front-Channel Logout 1.0 §3.
	BackchannelLogoutSupported         bool `json:"backchannel_logout_supported"`
	BackchannelLogoutSessionSupported  bool `json:"backchannel_logout_session_supported"`
	FrontchannelLogoutSupported        bool `json:"frontchannel_logout_supported"`
	FrontchannelLogoutSessionSupported bool `json:"frontchannel_logout_session_supported"`
}

// discover fetches the discovery document of issuer and checks it: the
// issuer it names, and the endpoints the relying party needs. Unusable
// optional endpoints are dropped with a warning.
func discover(ctx context.Context, hc *http.Client, issuer string, log *slog.Logger) (*discovery, error) {
	wellKnown := strings.TrimSuffix(issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return nil, fmt.Errorf("oidcrp: discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := hc.Do(req)
	if err != nil {
		return nil, fmt.Errorf("oidcrp: discovery: %w", err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return nil, fmt.Errorf("oidcrp: discovery: read %s: %w", wellKnown, err)
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("oidcrp: discovery: %s answered HTTP %d", wellKnown, resp.StatusCode)
	}
	if len(body) > maxResponseBytes {
		return nil, fmt.Errorf("oidcrp: discovery: %s is larger than 1 MiB", wellKnown)
	}
	var d discovery
	if err := json.Unmarshal(body, &d); err != nil {
		return nil, fmt.Errorf("oidcrp: discovery: %s: %w", wellKnown, err)
	}
	// Discovery §4.3: the issuer must be identical, by simple string comparison.
	if d.Issuer != issuer {
		return nil, fmt.Errorf("%w: configured %q, discovered %q", ErrIssuerMismatch, issuer, d.Issuer)
	}
	for name, v := range map[string]string{
		"authorization_endpoint": d.AuthorizationEndpoint, "token_endpoint": d.TokenEndpoint, "jwks_uri": d.JWKSURI,
	} {
		if err := endpointOK(issuer, v); err != nil {
			return nil, fmt.Errorf("oidcrp: discovery: %s: %w", name, err)
		}
	}
	for name, v := range map[string]*string{
		"userinfo_endpoint": &d.UserinfoEndpoint, "registration_endpoint": &d.RegistrationEndpoint,
		"end_session_endpoint": &d.EndSessionEndpoint, "pushed_authorization_request_endpoint": &d.PushedAuthorizationRequestEndpoint,
	} {
		if *v != "" && endpointOK(issuer, *v) != nil {
			log.Warn("oidcrp: ignoring unusable endpoint in discovery", "endpoint", name, "value", truncate(*v, 200))
			*v = ""
		}
	}
	return &d, nil
}

// endpointOK accepts absolute URLs, https unless the issuer itself is http.
func endpointOK(issuer, v string) error {
	u, err := url.Parse(v)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", truncate(v, 200))
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && strings.HasPrefix(issuer, "http://")) {
		return fmt.Errorf("%q must be https", truncate(v, 200))
	}
	return nil
}

// errResponseTooLarge fails reading a provider response beyond
// maxResponseBytes.
var errResponseTooLarge = errors.New("oidcrp: provider response larger than 1 MiB")

// limitedTransport caps every provider response body at maxResponseBytes,
// including those read by go-oidc and x/oauth2 (keys, userinfo, tokens),
// so a hostile provider cannot exhaust memory.
type limitedTransport struct{ next http.RoundTripper }

func (t limitedTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	resp, err := t.next.RoundTrip(req)
	if err != nil {
		return nil, err
	}
	resp.Body = &limitedBody{rc: resp.Body, left: maxResponseBytes}
	return resp, nil
}

type limitedBody struct {
	rc   io.ReadCloser
	left int64
}

func (b *limitedBody) Read(p []byte) (int, error) {
	if b.left <= 0 {
		var one [1]byte
		if n, err := b.rc.Read(one[:]); n > 0 {
			return 0, errResponseTooLarge
		} else if err != nil {
			return 0, err
		}
		return 0, nil
	}
	if int64(len(p)) > b.left {
		p = p[:b.left]
	}
	n, err := b.rc.Read(p)
	b.left -= int64(n)
	return n, err
}

func (b *limitedBody) Close() error { return b.rc.Close() }

// limitResponses returns a copy of c whose responses are capped.
func limitResponses(c *http.Client) *http.Client {
	next := c.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	cp := *c
	cp.Transport = limitedTransport{next: next}
	return &cp
}
