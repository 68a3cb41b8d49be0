package devop

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"net/url"
	"slices"
	"strconv"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// requestObjectsServed reports whether the authorization and PAR endpoints
// take signed request objects (RFC 9101).
func (p *Provider) requestObjectsServed() bool {
	return p.opts.RequestObjects || p.opts.RequireRequestObjects
}

// requestObjectClaims are the JWT claims of a request object that are not
// authorization request parameters.
var requestObjectClaims = []string{"iss", "aud", "exp", "nbf", "iat", "jti"}

// unpackRequestObject verifies the request object in q (RFC 9101 §6.3) and
// returns the authorization request parameters it carries, with q's
// client_id. The client is the one q names; the signature must verify with
// a key of its registered jwks or jwks_uri (ES256 or RS256); typ must be
// oauth-authz-req+jwt; iss must be the client, aud this issuer; exp must be
// in the future and nbf, when present, not in it; a client_id claim must
// match; response_type and scope sent outside must match those inside.
func (p *Provider) unpackRequestObject(q url.Values) (url.Values, error) {
	if len(q["request"]) != 1 || len(q["client_id"]) != 1 {
		return nil, errors.New("request and client_id must each be sent once")
	}
	clientID := q.Get("client_id")
	p.mu.Lock()
	var c client
	if stored := p.clients[clientID]; stored != nil {
		c = *stored
	}
	p.mu.Unlock()
	if c.metadata["jwks"] == nil && c.metadata["jwks_uri"] == nil {
		return nil, fmt.Errorf("client %q has no registered jwks", clientID)
	}
	jws, err := jose.ParseSignedCompact(q.Get("request"), []jose.SignatureAlgorithm{jose.ES256, jose.RS256})
	if err != nil {
		return nil, fmt.Errorf("not a signed JWT: %v", err)
	}
	if len(jws.Signatures) != 1 {
		return nil, errors.New("one signature expected")
	}
	h := jws.Signatures[0].Header
	if typ, _ := h.ExtraHeaders["typ"].(string); typ != "oauth-authz-req+jwt" {
		return nil, fmt.Errorf("typ %q, want oauth-authz-req+jwt", typ)
	}
	if err := p.verifyWithClientKeys(jws, &c); err != nil {
		return nil, err
	}
	payload := jws.UnsafePayloadWithoutVerification() // verified
	dec := json.NewDecoder(bytes.NewReader(payload))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil {
		return nil, errors.New("the payload is not a JSON object")
	}
	now := p.now()
	numeric := func(name string) (time.Time, bool) {
		n, ok := claims[name].(json.Number)
		if !ok {
			return time.Time{}, false
		}
		f, err := n.Float64()
		return time.Unix(int64(f), 0), err == nil
	}
	switch aud := claims["aud"].(type) {
	case string:
		if aud != p.Issuer() {
			return nil, fmt.Errorf("aud %q is not this issuer", aud)
		}
	case []any:
		if !slices.Contains(aud, any(p.Issuer())) {
			return nil, errors.New("aud does not name this issuer")
		}
	default:
		return nil, errors.New("aud is missing")
	}
	if iss, _ := claims["iss"].(string); iss != clientID {
		return nil, fmt.Errorf("iss %q is not the client_id", iss)
	}
	if exp, ok := numeric("exp"); !ok || !now.Before(exp) {
		return nil, errors.New("exp is missing or passed")
	}
	if _, present := claims["nbf"]; present {
		if nbf, ok := numeric("nbf"); !ok || nbf.After(now.Add(time.Minute)) {
			return nil, errors.New("nbf is in the future")
		}
	}
	if id, present := claims["client_id"]; present && id != clientID {
		return nil, errors.New("the client_id inside differs from the one outside")
	}
	out := url.Values{}
	for name, v := range claims {
		if slices.Contains(requestObjectClaims, name) {
			continue
		}
		switch v := v.(type) {
		case string:
			out.Set(name, v)
		case json.Number:
			out.Set(name, v.String())
		case bool:
			out.Set(name, strconv.FormatBool(v))
		default:
			b, _ := json.Marshal(v)
			out.Set(name, string(b))
		}
	}
	if out.Has("request") || out.Has("request_uri") {
		return nil, errors.New("a request object must not hold request or request_uri")
	}
	for _, name := range []string{"response_type", "scope"} {
		if q.Has(name) && q.Get(name) != out.Get(name) {
			return nil, fmt.Errorf("%s outside differs from the one inside", name)
		}
	}
	out.Set("client_id", clientID)
	return out, nil
}
