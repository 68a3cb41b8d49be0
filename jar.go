package oidcrp

import (
	"encoding/json"
	"fmt"
	"net/url"
	"strconv"
	"strings"
	"time"
)

// Signed request objects (RFC 9101, JAR; OIDC Core §6.1): the authorization
// request's parameters go into a JWT signed with the relying party's own
// key (keys.go), sent as the request parameter with client_id, and
// response_type and scope repeated outside as OpenID Connect requires. With
// PAR the request object is pushed. The key's public half is registered
// inline (jwks) with request_object_signing_alg.

// requestObjectLifetime is how long a request object is valid: it is used
// at once, by the PAR endpoint or the browser's redirect.
const requestObjectLifetime = 5 * time.Minute

// useJAR reports whether the registration must carry the relying party's
// key: the configuration asks for request objects, or the provider requires
// them of every client.
func useJAR(cfg *Config, d *discovery) bool {
	return cfg.RequestObjects || d.RequireSignedRequestObject
}

// useJAR reports whether c's authorization requests are signed: as above,
// or the provider requires it of this client in its registration.
func (c *client) useJAR(cfg *Config) bool {
	return useJAR(cfg, c.disc) || c.creds.Metadata.Extra["require_signed_request_object"] == true
}

// requestObjectKey returns the key c signs request objects with: the
// relying party's key for the registered request_object_signing_alg, which
// the provider must know (registered in jwks, or served at jwks_uri).
// Without one, the error says why logins cannot start.
func (l *lifecycle) requestObjectKey(c *client) (*rpKey, error) {
	why := "Config.RequestObjects is set"
	switch {
	case c.disc.RequireSignedRequestObject:
		why = "provider " + c.disc.Issuer + " requires signed request objects (require_signed_request_object)"
	case c.creds.Metadata.Extra["require_signed_request_object"] == true && !l.cfg.RequestObjects:
		why = "provider " + c.disc.Issuer + " requires signed request objects of client " + c.creds.ClientID + " (require_signed_request_object)"
	}
	alg, _ := c.creds.Metadata.Extra["request_object_signing_alg"].(string)
	if alg == "" {
		if alg = pickSigningAlg(c.disc.RequestObjectSigningAlgValuesSupported, l.keys.own); alg == "" {
			return nil, fmt.Errorf("oidcrp: %s, but provider %s accepts request objects signed with %q only, which the relying party's key cannot make; logins cannot start",
				why, c.disc.Issuer, c.disc.RequestObjectSigningAlgValuesSupported)
		}
	}
	k := l.keys.signingKey(alg, c.creds)
	if k == nil || !l.keys.published(k, c.creds) {
		hint := "the provider did not keep the keys the relying party registered (jwks)"
		switch {
		case l.cfg.ClientID != "":
			hint = "the configured client (Config.ClientID) has no key of the relying party registered (jwks); let the relying party register itself, or set Config.SigningKey"
		case !useJAR(l.cfg, c.disc):
			hint = "the relying party registered no key (jwks), as neither discovery nor the configuration asked for request objects; set Config.RequestObjects"
		}
		return nil, fmt.Errorf("oidcrp: %s, but %s; logins cannot start", why, hint)
	}
	return k, nil
}

// requestObject returns the parameters that replace params when c signs
// its requests: client_id, response_type and scope, and the request object
// carrying all of params.
func (rp *RP) requestObject(c *client, params url.Values) (url.Values, error) {
	k, err := rp.lc.requestObjectKey(c)
	if err != nil {
		return nil, err
	}
	now := rp.now()
	claims := map[string]any{}
	for name, vs := range params {
		if len(vs) == 0 {
			continue
		}
		claims[name] = vs[0]
		if name == "max_age" {
			if n, err := strconv.ParseInt(vs[0], 10, 64); err == nil {
				claims[name] = n
			}
		}
	}
	claims["iss"] = c.creds.ClientID
	claims["aud"] = c.disc.Issuer
	claims["client_id"] = c.creds.ClientID
	claims["iat"] = now.Unix()
	claims["nbf"] = now.Unix()
	claims["exp"] = now.Add(requestObjectLifetime).Unix()
	claims["jti"] = randomString()
	payload, err := json.Marshal(claims)
	if err != nil {
		return nil, err
	}
	compact, err := k.sign("oauth-authz-req+jwt", payload)
	if err != nil {
		return nil, fmt.Errorf("oidcrp: sign the request object: %w", err)
	}
	out := url.Values{"client_id": {c.creds.ClientID}, "request": {compact}}
	for _, name := range []string{"response_type", "scope"} {
		if v := params.Get(name); v != "" {
			out.Set(name, v)
		}
	}
	return out, nil
}

// withQuery is endpoint with params added after its own query, if any.
func withQuery(endpoint string, params url.Values) string {
	sep := "?"
	if strings.Contains(endpoint, "?") {
		sep = "&"
	}
	return endpoint + sep + params.Encode()
}
