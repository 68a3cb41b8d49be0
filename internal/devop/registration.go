package devop

import (
	"bytes"
	"crypto/subtle"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// client is the stored form of a registered client. Its slices and metadata
// map are replaced, never modified in place, so shallow copies stay valid.
type client struct {
	id              string
	secret          string
	secretExpiresAt time.Time // zero: never
	issuedAt        time.Time
	authMethod      string
	redirectURIs    []string
	postLogoutURIs  []string
	grantTypes      []string
	regToken        string
	metadata        map[string]any
	seq             int
}

func (c *client) export() Client {
	return Client{
		ID:                      c.id,
		Secret:                  c.secret,
		SecretExpiresAt:         c.secretExpiresAt,
		IssuedAt:                c.issuedAt,
		AuthMethod:              c.authMethod,
		RedirectURIs:            slices.Clone(c.redirectURIs),
		PostLogoutRedirectURIs:  slices.Clone(c.postLogoutURIs),
		GrantTypes:              slices.Clone(c.grantTypes),
		RegistrationAccessToken: c.regToken,
		Metadata:                deepCopyMap(c.metadata),
	}
}

// secretExpired reports whether the client's secret has expired at now.
func (c *client) secretExpired(now time.Time) bool {
	return !c.secretExpiresAt.IsZero() && !now.Before(c.secretExpiresAt)
}

// metadata is the validated, normalised form of a registration request.
type metadata struct {
	all            map[string]any // echoed metadata, defaults filled in
	redirectURIs   []string
	postLogoutURIs []string
	grantTypes     []string
	authMethod     string
}

// serverAssigned lists the fields that a client cannot choose; they are
// ignored in registration requests.
var serverAssigned = []string{
	"client_id", "client_secret", "client_secret_expires_at", "client_id_issued_at",
	"registration_access_token", "registration_client_uri",
}

// metadataError is an RFC 7591 §3.2.2 error.
type metadataError struct{ code, description string }

func (e *metadataError) Error() string { return e.code + ": " + e.description }

func invalidMetadata(format string, args ...any) *metadataError {
	return &metadataError{"invalid_client_metadata", fmt.Sprintf(format, args...)}
}

// parseMetadata validates client metadata from a registration or update
// request and fills in defaults.
func (p *Provider) parseMetadata(req map[string]any) (*metadata, *metadataError) {
	all := deepCopyMap(req)
	for _, k := range serverAssigned {
		delete(all, k)
	}
	md := &metadata{all: all}

	uris, ok := stringList(all["redirect_uris"])
	if !ok {
		return nil, &metadataError{"invalid_redirect_uri", "redirect_uris must be an array of strings"}
	}
	if len(uris) == 0 {
		return nil, &metadataError{"invalid_redirect_uri", "redirect_uris is required"}
	}
	for _, u := range uris {
		if err := checkRedirectURI(u); err != nil {
			return nil, &metadataError{"invalid_redirect_uri", fmt.Sprintf("redirect_uri %q: %v", u, err)}
		}
	}
	md.redirectURIs = uris

	if v, present := all["post_logout_redirect_uris"]; present {
		uris, ok := stringList(v)
		if !ok {
			return nil, invalidMetadata("post_logout_redirect_uris must be an array of strings")
		}
		for _, u := range uris {
			if err := checkRedirectURI(u); err != nil {
				return nil, invalidMetadata("post_logout_redirect_uri %q: %v", u, err)
			}
		}
		md.postLogoutURIs = uris
	}

	responseTypes := []string{"code"}
	if v, present := all["response_types"]; present {
		rt, ok := stringList(v)
		if !ok || len(rt) == 0 {
			return nil, invalidMetadata("response_types must be a non-empty array of strings")
		}
		for _, t := range rt {
			if t != "code" {
				return nil, invalidMetadata("response_type %q is not supported; only \"code\" is", t)
			}
		}
		responseTypes = rt
	}
	all["response_types"] = toAnyList(responseTypes)

	grantTypes := []string{"authorization_code"}
	if v, present := all["grant_types"]; present {
		gt, ok := stringList(v)
		if !ok || len(gt) == 0 {
			return nil, invalidMetadata("grant_types must be a non-empty array of strings")
		}
		for _, g := range gt {
			if g != "authorization_code" && g != "refresh_token" {
				return nil, invalidMetadata("grant_type %q is not supported", g)
			}
		}
		if !slices.Contains(gt, "authorization_code") {
			return nil, invalidMetadata("response_types [\"code\"] requires grant_types to include \"authorization_code\"")
		}
		grantTypes = gt
	}
	all["grant_types"] = toAnyList(grantTypes)
	md.grantTypes = grantTypes

	method := "client_secret_basic"
	if v, present := all["token_endpoint_auth_method"]; present {
		s, ok := v.(string)
		if !ok || s == "" {
			return nil, invalidMetadata("token_endpoint_auth_method must be a non-empty string")
		}
		method = s
	}
	if p.opts.ForceAuthMethod != "" {
		method = p.opts.ForceAuthMethod
	} else if !slices.Contains(p.opts.AuthMethods, method) {
		return nil, invalidMetadata("token_endpoint_auth_method %q is not supported (supported: %s)",
			method, strings.Join(p.opts.AuthMethods, ", "))
	}
	all["token_endpoint_auth_method"] = method
	md.authMethod = method

	for _, k := range []string{
		"client_name", "client_uri", "logo_uri", "policy_uri", "tos_uri", "jwks_uri", "scope",
		"software_id", "software_version", "software_statement", "sector_identifier_uri",
		"initiate_login_uri", "application_type",
	} {
		if v, present := all[k]; present {
			if _, ok := v.(string); !ok {
				return nil, invalidMetadata("%s must be a string", k)
			}
		}
	}
	if v, present := all["contacts"]; present {
		if _, ok := stringList(v); !ok {
			return nil, invalidMetadata("contacts must be an array of strings")
		}
	}
	if v, present := all["jwks"]; present {
		if _, ok := v.(map[string]any); !ok {
			return nil, invalidMetadata("jwks must be a JSON object")
		}
		if _, both := all["jwks_uri"]; both {
			return nil, invalidMetadata("jwks and jwks_uri must not both be present")
		}
	}
	if merr := checkKeyMetadata(all, method); merr != nil {
		return nil, merr
	}
	if v, present := all["application_type"]; present && v != "web" && v != "native" {
		return nil, invalidMetadata("application_type must be \"web\" or \"native\"")
	}
	if v, present := all["subject_type"]; present && v != "public" {
		return nil, invalidMetadata("subject_type must be \"public\"")
	}
	if v, present := all["id_token_signed_response_alg"]; present && v != "RS256" {
		return nil, invalidMetadata("id_token_signed_response_alg must be \"RS256\"")
	}
	if merr := checkEncryptionMetadata(all); merr != nil {
		return nil, merr
	}
	return md, nil
}

// checkRedirectURI requires an absolute URI without a fragment; http and
// https URIs need a host.
func checkRedirectURI(s string) error {
	u, err := url.Parse(s)
	if err != nil {
		return errors.New("not a valid URI")
	}
	if !u.IsAbs() {
		return errors.New("not an absolute URI")
	}
	if u.Fragment != "" || strings.Contains(s, "#") {
		return errors.New("must not contain a fragment")
	}
	if (u.Scheme == "http" || u.Scheme == "https") && u.Host == "" {
		return errors.New("has no host")
	}
	return nil
}

func stringList(v any) ([]string, bool) {
	if v == nil {
		return nil, true
	}
	list, ok := v.([]any)
	if !ok {
		return nil, false
	}
	out := make([]string, 0, len(list))
	for _, e := range list {
		s, ok := e.(string)
		if !ok {
			return nil, false
		}
		out = append(out, s)
	}
	return out, true
}

func toAnyList(s []string) []any {
	out := make([]any, len(s))
	for i, e := range s {
		out[i] = e
	}
	return out
}

// readJSONObject reads a size-capped JSON object request body. It returns the
// HTTP status and error to answer with when the body is unusable.
func readJSONObject(w http.ResponseWriter, r *http.Request) (map[string]any, int, *metadataError) {
	b, err := io.ReadAll(http.MaxBytesReader(w, r.Body, maxBodyBytes))
	if err != nil {
		var tooLarge *http.MaxBytesError
		if errors.As(err, &tooLarge) {
			return nil, http.StatusRequestEntityTooLarge,
				&metadataError{"invalid_request", fmt.Sprintf("request body exceeds %d bytes", maxBodyBytes)}
		}
		return nil, http.StatusBadRequest, &metadataError{"invalid_request", "reading request body: " + err.Error()}
	}
	dec := json.NewDecoder(bytes.NewReader(b))
	dec.UseNumber()
	var obj map[string]any
	if err := dec.Decode(&obj); err != nil || obj == nil {
		return nil, http.StatusBadRequest, invalidMetadata("request body must be a JSON object")
	}
	if dec.More() {
		return nil, http.StatusBadRequest, invalidMetadata("request body must hold a single JSON object")
	}
	return obj, 0, nil
}

// newSecret returns a fresh client secret and its expiry (zero: never).
func (p *Provider) newSecret(now time.Time) (string, time.Time) {
	secret := randomToken(32)
	if p.opts.AwkwardSecrets {
		secret = randomToken(8) + ":+%2B &=/?é" + randomToken(8)
	}
	var exp time.Time
	if p.opts.SecretLifetime != 0 {
		exp = now.Add(p.opts.SecretLifetime)
	}
	return secret, exp
}

// clientInfo is the RFC 7591 §3.2.1 / RFC 7592 §3 client information
// response. Callers hold p.mu.
func (p *Provider) clientInfo(c *client) map[string]any {
	info := deepCopyMap(c.metadata)
	info["client_id"] = c.id
	info["client_id_issued_at"] = c.issuedAt.Unix()
	if c.secret != "" {
		info["client_secret"] = c.secret
		var exp int64
		if !c.secretExpiresAt.IsZero() {
			exp = c.secretExpiresAt.Unix()
		}
		info["client_secret_expires_at"] = exp
	}
	info["registration_access_token"] = c.regToken
	info["registration_client_uri"] = p.issuer + "/register/" + url.PathEscape(c.id)
	return info
}

func (p *Provider) handleRegister(w http.ResponseWriter, r *http.Request) {
	p.count(func(s *Stats) { s.Registration++ })
	respond := func(status int, body map[string]any) {
		if p.opts.Registration != nil {
			p.opts.Registration(&status, body)
		}
		writeJSON(w, status, body)
	}
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		respond(http.StatusMethodNotAllowed, errorBody("invalid_request", "use POST to register a client"))
		return
	}
	if want := p.opts.InitialAccessToken; want != "" {
		got, ok := bearerToken(r)
		if !ok || subtle.ConstantTimeCompare([]byte(got), []byte(want)) != 1 {
			w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
			respond(http.StatusUnauthorized, errorBody("invalid_token", "a valid initial access token is required to register"))
			return
		}
	}
	req, status, merr := readJSONObject(w, r)
	if merr != nil {
		respond(status, errorBody(merr.code, merr.description))
		return
	}
	if p.opts.RegistrationRequest != nil {
		p.opts.RegistrationRequest(req)
	}
	md, merr := p.parseMetadata(req)
	if merr != nil {
		respond(http.StatusBadRequest, errorBody(merr.code, merr.description))
		return
	}
	now := p.now()
	c := &client{
		id:             randomToken(16),
		issuedAt:       now,
		authMethod:     md.authMethod,
		redirectURIs:   md.redirectURIs,
		postLogoutURIs: md.postLogoutURIs,
		grantTypes:     md.grantTypes,
		regToken:       randomToken(32),
		metadata:       md.all,
	}
	if c.authMethod != "none" && c.authMethod != "private_key_jwt" {
		c.secret, c.secretExpiresAt = p.newSecret(now)
	}
	p.mu.Lock()
	p.clientSeq++
	c.seq = p.clientSeq
	p.clients[c.id] = c
	info := p.clientInfo(c)
	p.mu.Unlock()
	respond(http.StatusCreated, info)
}

// forbiddenOnUpdate are fields that RFC 7592 §2.2 forbids in update requests.
var forbiddenOnUpdate = []string{
	"registration_access_token", "registration_client_uri", "client_secret_expires_at", "client_id_issued_at",
}

func (p *Provider) handleClientConfiguration(w http.ResponseWriter, r *http.Request, id string) {
	method := r.Method
	switch method {
	case http.MethodGet:
		p.count(func(s *Stats) { s.RegistrationRead++ })
	case http.MethodPut:
		p.count(func(s *Stats) { s.RegistrationUpdate++ })
	case http.MethodDelete:
		p.count(func(s *Stats) { s.RegistrationDelete++ })
	default:
		w.Header().Set("Allow", "GET, PUT, DELETE")
		writeError(w, http.StatusMethodNotAllowed, "invalid_request", "method "+method+" is not allowed")
		return
	}
	respond := func(status int, body map[string]any) {
		if p.opts.ClientConfiguration != nil {
			p.opts.ClientConfiguration(method, &status, body)
		}
		if status == http.StatusNoContent && len(body) == 0 {
			w.Header().Set("Cache-Control", "no-store")
			w.WriteHeader(status)
			return
		}
		writeJSON(w, status, body)
	}

	// Read the update before taking the lock; report body errors only once
	// the caller is authenticated.
	var (
		req        map[string]any
		bodyStatus int
		bodyErr    *metadataError
	)
	if method == http.MethodPut {
		req, bodyStatus, bodyErr = readJSONObject(w, r)
		if bodyErr == nil && p.opts.RegistrationRequest != nil {
			p.opts.RegistrationRequest(req)
		}
	}

	tok, hasToken := bearerToken(r)
	p.mu.Lock()
	c := p.clients[id]
	if c == nil || !hasToken || subtle.ConstantTimeCompare([]byte(tok), []byte(c.regToken)) != 1 {
		p.mu.Unlock()
		w.Header().Set("WWW-Authenticate", `Bearer error="invalid_token"`)
		respond(http.StatusUnauthorized, errorBody("invalid_token", "unknown client or invalid registration access token"))
		return
	}

	switch method {
	case http.MethodGet:
		if p.opts.RotateRegistrationToken {
			c.regToken = randomToken(32)
		}
		info := p.clientInfo(c)
		p.mu.Unlock()
		respond(http.StatusOK, info)

	case http.MethodDelete:
		p.deleteClientLocked(id)
		p.mu.Unlock()
		respond(http.StatusNoContent, map[string]any{})

	case http.MethodPut:
		info, status, merr := p.updateClientLocked(c, req, bodyStatus, bodyErr)
		p.mu.Unlock()
		if merr != nil {
			respond(status, errorBody(merr.code, merr.description))
			return
		}
		respond(http.StatusOK, info)
	}
}

// updateClientLocked applies an RFC 7592 update request. Callers hold p.mu.
func (p *Provider) updateClientLocked(c *client, req map[string]any, bodyStatus int, bodyErr *metadataError) (map[string]any, int, *metadataError) {
	if bodyErr != nil {
		return nil, bodyStatus, bodyErr
	}
	for _, k := range forbiddenOnUpdate {
		if _, present := req[k]; present {
			return nil, http.StatusBadRequest, invalidMetadata("%s must not be sent in an update request", k)
		}
	}
	if id, _ := req["client_id"].(string); id != c.id {
		return nil, http.StatusBadRequest, invalidMetadata("client_id must be present and match the client being updated")
	}
	if v, present := req["client_secret"]; present {
		if s, _ := v.(string); c.secret == "" || subtle.ConstantTimeCompare([]byte(s), []byte(c.secret)) != 1 {
			return nil, http.StatusBadRequest, invalidMetadata("client_secret does not match the current secret")
		}
	}
	md, merr := p.parseMetadata(req)
	if merr != nil {
		return nil, http.StatusBadRequest, merr
	}
	if p.refuseKeyChanges && !reflect.DeepEqual(md.all["jwks"], c.metadata["jwks"]) {
		return nil, http.StatusBadRequest, invalidMetadata("this provider does not take new keys for a registered client")
	}
	now := p.now()
	c.metadata = md.all
	c.redirectURIs = md.redirectURIs
	c.postLogoutURIs = md.postLogoutURIs
	c.grantTypes = md.grantTypes
	c.authMethod = md.authMethod
	switch {
	case md.authMethod == "none" || md.authMethod == "private_key_jwt":
		c.secret, c.secretExpiresAt = "", time.Time{}
	case c.secret == "" || c.secretExpired(now) || p.opts.SecretLifetime != 0:
		c.secret, c.secretExpiresAt = p.newSecret(now)
	}
	if p.opts.RotateRegistrationToken {
		c.regToken = randomToken(32)
	}
	return p.clientInfo(c), http.StatusOK, nil
}

// deleteClientLocked removes a client and everything issued to it. Callers
// hold p.mu.
func (p *Provider) deleteClientLocked(id string) {
	delete(p.clients, id)
	for k, v := range p.codes {
		if v.clientID == id {
			delete(p.codes, k)
		}
	}
	for k, v := range p.pending {
		if v.clientID == id {
			delete(p.pending, k)
		}
	}
	for k, v := range p.access {
		if v.clientID == id {
			delete(p.access, k)
		}
	}
	for k, v := range p.refresh {
		if v.clientID == id {
			delete(p.refresh, k)
		}
	}
}

// checkKeyMetadata checks the key-related metadata of a client registering
// for method: jwks must be a JWK Set of public keys; private_key_jwt needs
// jwks or jwks_uri; token_endpoint_auth_signing_alg must be one the
// provider takes, and an HMAC algorithm exactly for client_secret_jwt.
func checkKeyMetadata(all map[string]any, method string) *metadataError {
	if v, present := all["jwks"]; present {
		var set jose.JSONWebKeySet
		b, err := json.Marshal(v)
		if err != nil || json.Unmarshal(b, &set) != nil {
			return invalidMetadata("jwks is not a JWK Set")
		}
		for _, k := range set.Keys {
			if !k.IsPublic() || !k.Valid() {
				return invalidMetadata("jwks must hold public keys only")
			}
		}
	}
	_, hasJWKS := all["jwks"]
	_, hasURI := all["jwks_uri"]
	if method == "private_key_jwt" && !hasJWKS && !hasURI {
		return invalidMetadata("private_key_jwt requires jwks or jwks_uri")
	}
	if v, present := all["token_endpoint_auth_signing_alg"]; present {
		alg, _ := v.(string)
		if !slices.Contains(assertionAlgs, alg) {
			return invalidMetadata("token_endpoint_auth_signing_alg %q is not supported (supported: %s)", alg, strings.Join(assertionAlgs, ", "))
		}
		if jwtMethod(method) && strings.HasPrefix(alg, "HS") != (method == "client_secret_jwt") {
			return invalidMetadata("token_endpoint_auth_signing_alg %q does not suit %s", alg, method)
		}
	}
	return nil
}
