package oidcrp

import (
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Client authentication at every endpoint that authenticates the client:
// the token endpoint (code exchange, refresh, the registration probe), the
// PAR endpoint and the revocation endpoint. The methods are those of
// OpenID Connect Core §9: client_secret_basic (RFC 6749 §2.3.1, with the
// form-encoding some providers skip), client_secret_post, client_secret_jwt
// and private_key_jwt (RFC 7523 §2.2: a JWT signed with the client secret,
// or with the relying party's own key, keys.go), and none.

// assertionType is client_assertion_type of RFC 7523 §2.2.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// assertionLifetime is how long a client assertion is valid: it is used at
// once.
const assertionLifetime = time.Minute

// usesAssertion reports whether the client authenticates with a JWT.
func (cr *credentials) usesAssertion() bool {
	m := cr.authMethod()
	return m == "private_key_jwt" || m == "client_secret_jwt"
}

// pickSigningAlg picks the algorithm the relying party signs with, among
// those a provider accepts: ES256, else RS256; RS256 when it lists none
// (OIDC Discovery §3 has providers support it). With the application's
// own key (own), that key's algorithm. "" when none fits.
func pickSigningAlg(supported []string, own *rpKey) string {
	switch {
	case own != nil && (len(supported) == 0 || slices.Contains(supported, own.alg)):
		return own.alg
	case own != nil:
		return ""
	case slices.Contains(supported, "ES256"):
		return "ES256"
	case len(supported) == 0 || slices.Contains(supported, "RS256"):
		return "RS256"
	}
	return ""
}

// assertion returns a client assertion for c (RFC 7523 §3, OIDC Core §9):
// iss and sub the client_id, aud the token endpoint (or the issuer, for a
// provider that wants that), a unique jti and a short exp. It is signed
// with the client secret (client_secret_jwt, HS256 unless another HMAC
// algorithm is registered) or the relying party's key (private_key_jwt).
func (c *client) assertion() (string, error) {
	cr := c.creds
	aud := c.disc.TokenEndpoint
	if cr.AuthStyle == styleIssuerAudience {
		aud = c.disc.Issuer
	}
	now := c.now()
	payload, err := json.Marshal(map[string]any{
		"iss": cr.ClientID, "sub": cr.ClientID, "aud": aud, "jti": randomString(),
		"iat": now.Unix(), "exp": now.Add(assertionLifetime).Unix(),
	})
	if err != nil {
		return "", err
	}
	alg, _ := cr.Metadata.Extra["token_endpoint_auth_signing_alg"].(string)
	if cr.authMethod() == "client_secret_jwt" {
		if !strings.HasPrefix(alg, "HS") {
			alg = "HS256"
		}
		s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: []byte(cr.ClientSecret)}, nil)
		if err != nil {
			return "", fmt.Errorf("oidcrp: client assertion: %w", err)
		}
		jws, err := s.Sign(payload)
		if err != nil {
			return "", fmt.Errorf("oidcrp: client assertion: %w", err)
		}
		return jws.CompactSerialize()
	}
	if alg == "" {
		alg = pickSigningAlg(c.disc.TokenEndpointAuthSigningAlgValuesSupported, c.keys.own)
	}
	k := c.keys.signingKey(alg, cr)
	if k == nil {
		return "", fmt.Errorf("oidcrp: client %s authenticates with private_key_jwt but the relying party has no %s key; let the relying party register itself, or set Config.SigningKey", cr.ClientID, alg)
	}
	jwt, err := k.sign("", payload)
	if err != nil {
		return "", fmt.Errorf("oidcrp: client assertion: %w", err)
	}
	return jwt, nil
}

// authenticate adds c's client authentication to a form POST: to form, or
// to header for HTTP Basic. form must not already hold any.
func (c *client) authenticate(form url.Values, header http.Header) error {
	cr := c.creds
	switch {
	case cr.usesAssertion():
		a, err := c.assertion()
		if err != nil {
			return err
		}
		form.Set("client_id", cr.ClientID)
		form.Set("client_assertion_type", assertionType)
		form.Set("client_assertion", a)
	case cr.authMethod() == "client_secret_basic" && cr.AuthStyle == styleRawBasic:
		header.Set("Authorization", basicAuth(cr.ClientID, string(cr.ClientSecret)))
	case cr.authMethod() == "client_secret_basic" && cr.AuthStyle != stylePost:
		header.Set("Authorization", basicAuth(url.QueryEscape(cr.ClientID), url.QueryEscape(string(cr.ClientSecret)))) // RFC 6749 §2.3.1
	default:
		form.Set("client_id", cr.ClientID)
		if cr.ClientSecret != "" {
			form.Set("client_secret", string(cr.ClientSecret))
		}
	}
	return nil
}

func basicAuth(user, pass string) string {
	r := http.Request{Header: http.Header{}}
	r.SetBasicAuth(user, pass)
	return r.Header.Get("Authorization")
}

// authenticatedPost returns a form POST of form to endpoint, carrying c's
// client authentication. form is not modified.
func (c *client) authenticatedPost(ctx context.Context, endpoint string, form url.Values) (*http.Request, error) {
	form = cloneValues(form)
	header := http.Header{}
	if err := c.authenticate(form, header); err != nil {
		return nil, err
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, endpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return nil, err
	}
	req.Header = header
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.Header.Set("Accept", "application/json")
	return req, nil
}

func cloneValues(v url.Values) url.Values {
	out := make(url.Values, len(v))
	for k, vs := range v {
		out[k] = append([]string(nil), vs...)
	}
	return out
}

// tokenAuthTransport authenticates the requests x/oauth2 makes to the
// token endpoint (code exchange, refresh) the ways x/oauth2 cannot: HTTP
// Basic without form-encoding, and client assertions, made fresh for each
// request. x/oauth2 is then configured to send client_id alone (or Basic).
type tokenAuthTransport struct {
	next     http.RoundTripper
	tokenURL string
	c        *client
}

func (t tokenAuthTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	if req.Method != http.MethodPost || req.URL.String() != t.tokenURL {
		return t.next.RoundTrip(req)
	}
	cr := t.c.creds
	switch {
	case cr.usesAssertion() && req.Body != nil:
		b, err := io.ReadAll(io.LimitReader(req.Body, 1<<20))
		req.Body.Close()
		if err != nil {
			return nil, err
		}
		form, err := url.ParseQuery(string(b))
		if err != nil {
			return nil, err
		}
		req = req.Clone(req.Context())
		if err := t.c.authenticate(form, req.Header); err != nil {
			return nil, err
		}
		body := form.Encode()
		req.Body, req.ContentLength = io.NopCloser(strings.NewReader(body)), int64(len(body))
		req.GetBody = func() (io.ReadCloser, error) { return io.NopCloser(strings.NewReader(body)), nil }
	case cr.AuthStyle == styleRawBasic:
		if _, _, ok := req.BasicAuth(); ok {
			req = req.Clone(req.Context())
			_ = t.c.authenticate(url.Values{}, req.Header)
		}
	}
	return t.next.RoundTrip(req)
}

// withTokenAuth returns hc with c's authentication applied to token
// endpoint requests by tokenAuthTransport, when c needs it.
func withTokenAuth(hc *http.Client, c *client) *http.Client {
	if !c.creds.usesAssertion() && c.creds.AuthStyle != styleRawBasic {
		return hc
	}
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	out := *hc
	out.Transport = tokenAuthTransport{next: next, tokenURL: c.disc.TokenEndpoint, c: c}
	return &out
}
