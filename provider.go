package oidcrp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
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
	CodeChallengeMethodsSupported     []string `json:"code_challenge_methods_supported"`
	TokenEndpointAuthMethodsSupported []string `json:"token_endpoint_auth_methods_supported"`
	GrantTypesSupported               []string `json:"grant_types_supported"`
	IDTokenSigningAlgValuesSupported  []string `json:"id_token_signing_alg_values_supported"`
	AuthorizationResponseIssSupported bool     `json:"authorization_response_iss_parameter_supported"`
}

// discover fetches and checks the provider's discovery document.
func (rp *RP) discover(ctx context.Context) (*discovery, error) {
	wellKnown := strings.TrimSuffix(rp.cfg.Issuer, "/") + "/.well-known/openid-configuration"
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, wellKnown, nil)
	if err != nil {
		return nil, fmt.Errorf("oidcrp: discovery: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	resp, err := rp.httpClient.Do(req)
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
	if d.Issuer != rp.cfg.Issuer {
		return nil, fmt.Errorf("%w: configured %q, discovered %q", ErrIssuerMismatch, rp.cfg.Issuer, d.Issuer)
	}
	for name, v := range map[string]string{
		"authorization_endpoint": d.AuthorizationEndpoint, "token_endpoint": d.TokenEndpoint, "jwks_uri": d.JWKSURI,
	} {
		if err := rp.endpointOK(v); err != nil {
			return nil, fmt.Errorf("oidcrp: discovery: %s: %w", name, err)
		}
	}
	for name, v := range map[string]*string{
		"userinfo_endpoint": &d.UserinfoEndpoint, "registration_endpoint": &d.RegistrationEndpoint,
		"end_session_endpoint": &d.EndSessionEndpoint,
	} {
		if *v != "" && rp.endpointOK(*v) != nil {
			rp.log.Warn("oidcrp: ignoring unusable endpoint in discovery", "endpoint", name, "value", truncate(*v, 200))
			*v = ""
		}
	}
	return &d, nil
}

// endpointOK accepts absolute URLs, https unless the issuer itself is http.
func (rp *RP) endpointOK(v string) error {
	u, err := url.Parse(v)
	if err != nil || !u.IsAbs() || u.Host == "" {
		return fmt.Errorf("%q is not an absolute URL", truncate(v, 200))
	}
	if u.Scheme != "https" && !(u.Scheme == "http" && strings.HasPrefix(rp.cfg.Issuer, "http://")) {
		return fmt.Errorf("%q must be https", truncate(v, 200))
	}
	return nil
}

// conn is a ready connection to the provider: discovery, credentials and
// what is built from them. It is immutable; a renewal replaces it.
type conn struct {
	disc     *discovery
	provider *oidc.Provider
	creds    *Credentials
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
	renewAt  time.Time // when the credentials need renewing; zero: never
	gone     bool      // the provider no longer knows the client
}

// conn returns the ready connection, setting it up or renewing it first if
// needed. Concurrent callers share one attempt; after a failure, callers get
// the failure without a new attempt until a backoff has passed.
func (rp *RP) conn(ctx context.Context) (*conn, error) {
	now := rp.now()
	if c := rp.cur.Load(); c != nil && (c.renewAt.IsZero() || now.Before(c.renewAt)) {
		if next := rp.nextCheck.Load(); next != 0 && now.UnixNano() >= next && rp.nextCheck.CompareAndSwap(next, now.Add(checkEvery).UnixNano()) {
			go func() { // periodic, in its own trace: does the provider still know us?
				ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
				defer cancel()
				rp.verify(ctx, c)
			}()
		}
		return c, nil
	}
	c, err := rp.setup.do(ctx, rp.now, rp.connect)
	if err == nil {
		rp.nextCheck.CompareAndSwap(0, now.Add(checkEvery).UnixNano())
		return c, nil
	}
	if cur := rp.cur.Load(); cur != nil && !cur.gone && !cur.creds.expiresWithin(now, 0) {
		// Renewal failed (store or provider down) but the secret still works.
		rp.log.Warn("oidcrp: renewing the client failed; using the current credentials until they expire", "client_id", cur.creds.ClientID,
			"expires_at", cur.creds.ClientSecretExpiresAt, "err", err)
		return cur, nil
	}
	return nil, err
}

// connect discovers (once) and obtains credentials.
func (rp *RP) connect(ctx context.Context) (*conn, error) {
	prev := rp.cur.Load()
	var disc *discovery
	if prev != nil {
		disc = prev.disc
	} else {
		dctx, end := rp.span(ctx, OpDiscovery, "")
		d, err := rp.discover(dctx)
		end(err)
		if err != nil {
			return nil, err
		}
		disc = d
		if rp.jwks != nil {
			rp.jwks.url.Store(&d.JWKSURI)
		}
	}
	creds, renewAt, err := rp.credentials(ctx, disc, prev)
	if err != nil {
		return nil, err
	}
	c := rp.newConn(disc, prev, creds, renewAt)
	rp.cur.Store(c)
	return c, nil
}

// newConn builds the OAuth 2.0 configuration and ID token verifier.
func (rp *RP) newConn(disc *discovery, prev *conn, creds *Credentials, renewAt time.Time) *conn {
	c := &conn{disc: disc, creds: creds, renewAt: renewAt}
	if prev != nil {
		c.provider = prev.provider // and its cached keys
	} else {
		c.provider = (&oidc.ProviderConfig{
			IssuerURL:   disc.Issuer,
			AuthURL:     disc.AuthorizationEndpoint,
			TokenURL:    disc.TokenEndpoint,
			UserInfoURL: disc.UserinfoEndpoint,
			JWKSURL:     disc.JWKSURI,
		}).NewProvider(oidc.ClientContext(context.Background(), rp.httpClient))
	}
	style := oauth2.AuthStyleInParams
	if creds.authMethod() == "client_secret_basic" {
		style = oauth2.AuthStyleInHeader
	}
	c.oauth = &oauth2.Config{
		ClientID:     creds.ClientID,
		ClientSecret: string(creds.ClientSecret),
		Endpoint:     oauth2.Endpoint{AuthURL: disc.AuthorizationEndpoint, TokenURL: disc.TokenEndpoint, AuthStyle: style},
		RedirectURL:  rp.cfg.RedirectURL,
		Scopes:       rp.cfg.Scopes,
	}
	alg := creds.Metadata.IDTokenSignedResponseAlg
	if alg == "" || alg == "none" {
		alg = oidc.RS256 // OIDC DCR §2 default; unsigned ID tokens are never accepted
	}
	c.verifier = c.provider.Verifier(&oidc.Config{
		ClientID:             creds.ClientID,
		SupportedSigningAlgs: []string{alg},
		Now:                  rp.now,
	})
	return c
}

// flight runs one setup at a time and remembers a failure for a backoff
// period, so a provider outage costs one attempt per period, not one per
// request.
type flight struct {
	mu       sync.Mutex
	call     *flightCall
	failures int
	retryAt  time.Time
	lastErr  error
}

type flightCall struct {
	done  chan struct{}
	c     *conn
	err   error
	retry time.Duration
}

// setupTimeout bounds one setup attempt, which runs detached from the
// request that started it so that its cancellation does not fail the others.
const setupTimeout = 60 * time.Second

func (f *flight) do(ctx context.Context, now func() time.Time, fn func(context.Context) (*conn, error)) (*conn, error) {
	f.mu.Lock()
	call := f.call
	if call == nil {
		if t := now(); t.Before(f.retryAt) {
			err := &unavailableError{cause: f.lastErr, retryAfter: f.retryAt.Sub(t)}
			f.mu.Unlock()
			return nil, err
		}
		call = &flightCall{done: make(chan struct{})}
		f.call = call
		go func() {
			sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), setupTimeout)
			defer cancel()
			c, err := fn(sctx)
			f.mu.Lock()
			call.c, call.err = c, err
			f.call = nil
			if err != nil {
				f.failures++
				f.lastErr = err
				call.retry = backoff(f.failures)
				f.retryAt = now().Add(call.retry)
			} else {
				f.failures, f.lastErr, f.retryAt = 0, nil, time.Time{}
			}
			f.mu.Unlock()
			close(call.done)
		}()
	}
	f.mu.Unlock()
	select {
	case <-call.done:
		if call.err != nil {
			return nil, &unavailableError{cause: call.err, retryAfter: call.retry}
		}
		return call.c, nil
	case <-ctx.Done():
		return nil, &unavailableError{cause: ctx.Err(), retryAfter: backoff(1)}
	}
}

// backoff is 1s, 2s, 4s … capped at one minute.
func backoff(failures int) time.Duration {
	d := time.Second << min(failures-1, 6)
	return min(d, time.Minute)
}

// unavailableError is a setup failure; it wraps ErrUnavailable and its cause.
type unavailableError struct {
	cause      error
	retryAfter time.Duration
}

func (e *unavailableError) Error() string {
	if e.cause == nil {
		return ErrUnavailable.Error()
	}
	return ErrUnavailable.Error() + ": " + strings.TrimPrefix(e.cause.Error(), "oidcrp: ")
}

func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.cause} }

// retryAfter returns how long a client should wait after err, if it says.
func retryAfter(err error) (time.Duration, bool) {
	var u *unavailableError
	if errors.As(err, &u) {
		return u.retryAfter, true
	}
	return 0, false
}

// wantMetadata is the metadata to register: the defaults completed with
// Config.Metadata and what the provider supports.
func (rp *RP) wantMetadata(disc *discovery) (ClientMetadata, error) {
	m := rp.cfg.Metadata
	m.Extra = cloneMap(m.Extra)
	if !slices.Contains(m.RedirectURIs, rp.cfg.RedirectURL) {
		m.RedirectURIs = append(slices.Clone(m.RedirectURIs), rp.cfg.RedirectURL)
	}
	if m.PostLogoutRedirectURIs == nil && disc.EndSessionEndpoint != "" {
		m.PostLogoutRedirectURIs = []string{rp.cfg.PostLogoutRedirectURL}
	}
	if m.ResponseTypes == nil {
		m.ResponseTypes = []string{"code"}
	}
	if m.GrantTypes == nil {
		m.GrantTypes = []string{"authorization_code"}
		if slices.Contains(disc.GrantTypesSupported, "refresh_token") {
			m.GrantTypes = append(m.GrantTypes, "refresh_token")
		}
	}
	if m.ApplicationType == "" {
		m.ApplicationType = "web"
	}
	if m.ClientName == "" {
		m.ClientName = "oidcrp"
	}
	if m.Scope == "" {
		m.Scope = strings.Join(rp.cfg.Scopes, " ")
	}
	if m.TokenEndpointAuthMethod == "" {
		supported := disc.TokenEndpointAuthMethodsSupported
		if len(supported) == 0 {
			supported = []string{"client_secret_basic"} // Discovery §3 default
		}
		for _, method := range []string{"client_secret_basic", "client_secret_post", "none"} {
			if slices.Contains(supported, method) {
				m.TokenEndpointAuthMethod = method
				break
			}
		}
		if m.TokenEndpointAuthMethod == "" {
			return m, fmt.Errorf("oidcrp: provider supports none of client_secret_basic, client_secret_post, none (it lists %q)", supported)
		}
	}
	return m, nil
}

func cloneMap(m map[string]any) map[string]any {
	if m == nil {
		return nil
	}
	c := make(map[string]any, len(m))
	for k, v := range m {
		c[k] = v
	}
	return c
}
