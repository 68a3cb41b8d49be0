package devop

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// Client authentication with a JWT (RFC 7523 §2.2 and §3, OIDC Core §9):
// private_key_jwt, signed with a key of the client's registered jwks or
// jwks_uri, and client_secret_jwt, an HMAC with the client secret.

// assertionType is the client_assertion_type of RFC 7523 §2.2.
const assertionType = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer"

// MaxAssertionLifetime bounds how far in the future a client assertion's
// exp may lie.
const MaxAssertionLifetime = 10 * time.Minute

// jwksCacheLifetime is how long a client's jwks_uri set is used before it is
// fetched again; an unknown kid fetches it at once.
const jwksCacheLifetime = 5 * time.Minute

// assertionAlgs are the algorithms client assertions may be signed with,
// as advertised in token_endpoint_auth_signing_alg_values_supported.
var assertionAlgs = []string{"ES256", "RS256", "HS256"}

// Assertion is a client assertion the provider accepted.
type Assertion struct {
	// Endpoint is where it was presented: "token", "par" or "revocation".
	Endpoint string
	// Method is private_key_jwt or client_secret_jwt.
	Method string
	// Alg and KeyID are from its JOSE header.
	Alg, KeyID string
	// Claims are its claims; numbers are json.Number values.
	Claims map[string]any
}

// jwtMethods are the token endpoint authentication methods that use a JWT.
func jwtMethod(m string) bool { return m == "private_key_jwt" || m == "client_secret_jwt" }

// cachedJWKS is a client's key set fetched from its jwks_uri.
type cachedJWKS struct {
	set     jose.JSONWebKeySet
	fetched time.Time
}

// verifyAssertion authenticates the client of a client assertion in form
// (RFC 7523 §3): the type is jwt-bearer; iss and sub are the client_id (and
// match a client_id sent with it); aud names the token endpoint or the
// issuer (only the issuer with [Options.AssertionIssuerAudienceOnly]); exp
// lies in the future, at most MaxAssertionLifetime; the jti was not seen
// before; the signature verifies with the client's keys (private_key_jwt)
// or its secret (client_secret_jwt), with the registered
// token_endpoint_auth_signing_alg when there is one.
func (p *Provider) verifyAssertion(form url.Values, endpoint string) (client, *tokenError) {
	unauthorized := func(format string, args ...any) *tokenError {
		return &tokenError{http.StatusUnauthorized, "invalid_client", "client assertion: " + fmt.Sprintf(format, args...)}
	}
	if form.Get("client_assertion_type") != assertionType {
		return client{}, &tokenError{http.StatusBadRequest, "invalid_request", "client_assertion_type must be " + assertionType}
	}
	if form.Has("client_secret") {
		return client{}, &tokenError{http.StatusBadRequest, "invalid_request", "use only one client authentication method"}
	}
	jws, err := jose.ParseSignedCompact(form.Get("client_assertion"), []jose.SignatureAlgorithm{jose.ES256, jose.RS256, jose.HS256, jose.HS384, jose.HS512})
	if err != nil || len(jws.Signatures) != 1 {
		return client{}, unauthorized("not a signed JWT")
	}
	h := jws.Signatures[0].Header
	claims, err := decodeClaims(jws.UnsafePayloadWithoutVerification())
	if err != nil {
		return client{}, unauthorized("the payload is not a JSON object")
	}
	iss, _ := claims["iss"].(string)
	if sub, _ := claims["sub"].(string); iss == "" || sub != iss {
		return client{}, unauthorized("iss and sub must both be the client_id")
	}
	if id := form.Get("client_id"); id != "" && id != iss {
		return client{}, unauthorized("client_id does not match the assertion's iss")
	}
	c, ok := p.clientCopy(iss)
	if !ok {
		return client{}, unauthorized("unknown client")
	}
	method := "private_key_jwt"
	if strings.HasPrefix(h.Algorithm, "HS") {
		method = "client_secret_jwt"
	}
	if c.authMethod != method {
		return client{}, unauthorized("the client is registered for %s but authenticated with %s", c.authMethod, method)
	}
	if want, _ := c.metadata["token_endpoint_auth_signing_alg"].(string); want != "" && h.Algorithm != want {
		return client{}, unauthorized("alg %s, but the client registered %s", h.Algorithm, want)
	}
	if method == "client_secret_jwt" {
		if c.secret == "" || c.secretExpired(p.now()) {
			return client{}, unauthorized("the client has no valid secret")
		}
		if _, err := jws.Verify([]byte(c.secret)); err != nil {
			return client{}, unauthorized("the signature does not verify with the client secret")
		}
	} else if err := p.verifyWithClientKeys(jws, &c); err != nil {
		return client{}, unauthorized("%v", err)
	}
	if err := p.checkAssertionClaims(claims); err != nil {
		return client{}, unauthorized("%v", err)
	}
	p.mu.Lock()
	p.stats.ClientAssertions++
	p.assertions = append(p.assertions, Assertion{Endpoint: endpoint, Method: method, Alg: h.Algorithm, KeyID: h.KeyID, Claims: claims})
	p.mu.Unlock()
	return c, nil
}

// checkAssertionClaims checks aud, exp and jti, and records the jti.
func (p *Provider) checkAssertionClaims(claims map[string]any) error {
	issuer := p.Issuer()
	accepted := []string{issuer}
	if !p.opts.AssertionIssuerAudienceOnly {
		accepted = append(accepted, issuer+"/token")
	}
	if !slices.ContainsFunc(audiences(claims["aud"]), func(a string) bool { return slices.Contains(accepted, a) }) {
		return fmt.Errorf("aud %v names neither of %q", claims["aud"], accepted)
	}
	now := p.now()
	n, ok := claims["exp"].(json.Number)
	f, err := n.Float64()
	if !ok || err != nil {
		return errors.New("exp is missing")
	}
	exp := time.Unix(int64(f), 0)
	switch {
	case !now.Before(exp):
		return errors.New("expired")
	case exp.Sub(now) > MaxAssertionLifetime:
		return fmt.Errorf("exp lies more than %v ahead", MaxAssertionLifetime)
	}
	jti, _ := claims["jti"].(string)
	if jti == "" {
		return errors.New("jti is missing")
	}
	key := claims["iss"].(string) + " " + jti
	p.mu.Lock()
	defer p.mu.Unlock()
	for k, until := range p.jtis {
		if now.After(until) {
			delete(p.jtis, k)
		}
	}
	if _, seen := p.jtis[key]; seen {
		return errors.New("jti was used already")
	}
	p.jtis[key] = exp
	return nil
}

// verifyWithClientKeys verifies jws with a key of c's registered jwks or
// of the set at its jwks_uri, fetched again when no key has the kid.
func (p *Provider) verifyWithClientKeys(jws *jose.JSONWebSignature, c *client) error {
	if strings.HasPrefix(jws.Signatures[0].Header.Algorithm, "HS") {
		return errors.New("a symmetric alg is not a signature with the client's key")
	}
	kid := jws.Signatures[0].Header.KeyID
	for refetch := range 2 {
		set, err := p.clientKeySet(c, refetch == 1)
		if err != nil {
			return err
		}
		known := false
		for _, k := range set.Keys {
			if (kid == "" || k.KeyID == kid) && k.IsPublic() {
				known = true
				if _, err := jws.Verify(k.Key); err == nil {
					return nil
				}
			}
		}
		if known || c.metadata["jwks_uri"] == nil {
			break
		}
	}
	return errors.New("the signature does not verify with the client's registered keys")
}

// clientKeySet returns c's registered jwks, or the set at its jwks_uri:
// cached for jwksCacheLifetime unless fresh is asked.
func (p *Provider) clientKeySet(c *client, fresh bool) (jose.JSONWebKeySet, error) {
	var set jose.JSONWebKeySet
	if jwks, ok := c.metadata["jwks"]; ok {
		b, err := json.Marshal(jwks)
		if err != nil || json.Unmarshal(b, &set) != nil {
			return set, errors.New("the client's registered jwks is unusable")
		}
		return set, nil
	}
	uri, _ := c.metadata["jwks_uri"].(string)
	if uri == "" {
		return set, errors.New("the client registered neither jwks nor jwks_uri")
	}
	now := p.now()
	p.mu.Lock()
	cached, ok := p.jwksCache[uri]
	p.mu.Unlock()
	if ok && !fresh && now.Sub(cached.fetched) < jwksCacheLifetime {
		return cached.set, nil
	}
	p.count(func(s *Stats) { s.JWKSFetches++ })
	hc := p.opts.HTTPClient
	if hc == nil {
		hc = http.DefaultClient
	}
	resp, err := hc.Get(uri)
	if err != nil {
		return set, fmt.Errorf("fetching the client's jwks_uri: %v", err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxBodyBytes))
	if err != nil || resp.StatusCode != http.StatusOK || json.Unmarshal(b, &set) != nil {
		return set, fmt.Errorf("the client's jwks_uri answered %d with no usable key set", resp.StatusCode)
	}
	p.mu.Lock()
	p.jwksCache[uri] = cachedJWKS{set: set, fetched: now}
	p.mu.Unlock()
	return set, nil
}

// decodeClaims decodes a JSON object with numbers as json.Number.
func decodeClaims(b []byte) (map[string]any, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, errors.New("not a JSON object")
	}
	return claims, nil
}

// Assertions returns the client assertions the provider accepted, oldest
// first.
func (p *Provider) Assertions() []Assertion {
	p.mu.Lock()
	defer p.mu.Unlock()
	out := make([]Assertion, len(p.assertions))
	for i, a := range p.assertions {
		a.Claims = deepCopyMap(a.Claims)
		out[i] = a
	}
	return out
}

// SetRefuseKeyChanges makes RFC 7592 updates that change a client's jwks
// fail (invalid_client_metadata), as [Options.RefuseKeyChanges] does, or
// succeed again.
func (p *Provider) SetRefuseKeyChanges(refuse bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	p.refuseKeyChanges = refuse
}
