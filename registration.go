package oidcrp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"reflect"
	"slices"
	"strconv"
	"strings"
	"time"
)

// maxResponseBytes caps every JSON document read from a provider.
const maxResponseBytes = 1 << 20

// ClientMetadata is the client metadata of OpenID Connect Dynamic Client
// Registration 1.0 §2, RFC 7591 §2, RP-Initiated Logout 1.0, Back-Channel
// Logout 1.0 and Front-Channel Logout 1.0 that the relying party acts on or
// the provider alone interprets. Empty fields are
// omitted from a registration request. Metadata the type does not model
// (localized names such as "client_name#ja", provider extensions, or
// features the relying party does not implement, such as encrypted ID
// tokens) goes in Extra; with request objects (jar.go) the relying party
// sets jwks and request_object_signing_alg there itself;
// Extra never overrides a modelled field.
type ClientMetadata struct {
	RedirectURIs              []string `json:"redirect_uris,omitempty"`
	ResponseTypes             []string `json:"response_types,omitempty"`
	GrantTypes                []string `json:"grant_types,omitempty"`
	ApplicationType           string   `json:"application_type,omitempty"`
	Contacts                  []string `json:"contacts,omitempty"`
	ClientName                string   `json:"client_name,omitempty"`
	LogoURI                   string   `json:"logo_uri,omitempty"`
	ClientURI                 string   `json:"client_uri,omitempty"`
	PolicyURI                 string   `json:"policy_uri,omitempty"`
	TOSURI                    string   `json:"tos_uri,omitempty"`
	SectorIdentifierURI       string   `json:"sector_identifier_uri,omitempty"`
	SubjectType               string   `json:"subject_type,omitempty"`
	IDTokenSignedResponseAlg  string   `json:"id_token_signed_response_alg,omitempty"`
	UserinfoSignedResponseAlg string   `json:"userinfo_signed_response_alg,omitempty"`
	TokenEndpointAuthMethod   string   `json:"token_endpoint_auth_method,omitempty"`
	DefaultMaxAge             int64    `json:"default_max_age,omitempty"`
	RequireAuthTime           bool     `json:"require_auth_time,omitempty"`
	DefaultACRValues          []string `json:"default_acr_values,omitempty"`
	Scope                     string   `json:"scope,omitempty"`
	SoftwareID                string   `json:"software_id,omitempty"`
	SoftwareVersion           string   `json:"software_version,omitempty"`
	SoftwareStatement         string   `json:"software_statement,omitempty"`
	PostLogoutRedirectURIs    []string `json:"post_logout_redirect_uris,omitempty"`

	// Back-Channel Logout 1.0 §2.2: where the provider POSTs logout tokens,
	// and whether they must name the provider's session (sid).
	BackchannelLogoutURI             string `json:"backchannel_logout_uri,omitempty"`
	BackchannelLogoutSessionRequired bool   `json:"backchannel_logout_session_required,omitempty"`
	// Front-Channel Logout 1.0 §2: the page the provider loads in an iframe
	// at logout, and whether it must carry iss and sid.
	FrontchannelLogoutURI             string `json:"frontchannel_logout_uri,omitempty"`
	FrontchannelLogoutSessionRequired bool   `json:"frontchannel_logout_session_required,omitempty"`

	// Extra holds any other metadata, sent as top-level members and filled
	// from unknown members of a response.
	Extra map[string]any `json:"-"`
}

// clientMetadataFields is ClientMetadata without methods, used to
// (un)marshal the modelled fields without recursion.
type clientMetadataFields ClientMetadata

// metadataJSON is ClientMetadata in its wire form: the modelled fields and
// the members of Extra in one JSON object.
type metadataJSON ClientMetadata

// responseOnlyFields are members of a client information response that are
// not client metadata (RFC 7591 §3.2.1, RFC 7592 §3).
var responseOnlyFields = []string{
	"client_id", "client_secret", "client_secret_expires_at", "client_id_issued_at",
	"registration_access_token", "registration_client_uri",
}

// MarshalJSON encodes the metadata as one JSON object: the modelled fields
// that are set, then the members of Extra that do not collide with them.
func (m metadataJSON) MarshalJSON() ([]byte, error) {
	known, err := json.Marshal(clientMetadataFields(m))
	if err != nil || len(m.Extra) == 0 {
		return known, err
	}
	var obj map[string]any
	if err := json.Unmarshal(known, &obj); err != nil {
		return nil, err
	}
	for k, v := range m.Extra {
		if _, taken := obj[k]; !taken && !isMetadataField(k) {
			obj[k] = v
		}
	}
	return json.Marshal(obj)
}

// UnmarshalJSON decodes the modelled fields and keeps every other member,
// except the credential members of a registration response, in Extra.
func (m *metadataJSON) UnmarshalJSON(b []byte) error {
	var f clientMetadataFields
	if err := json.Unmarshal(b, &f); err != nil {
		return err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(b, &all); err != nil {
		return err
	}
	f.Extra = nil
	for k, raw := range all {
		if isMetadataField(k) || slices.Contains(responseOnlyFields, k) {
			continue
		}
		var v any
		if err := json.Unmarshal(raw, &v); err != nil {
			return err
		}
		if f.Extra == nil {
			f.Extra = map[string]any{}
		}
		f.Extra[k] = v
	}
	*m = metadataJSON(f)
	return nil
}

// metadataFieldNames are the JSON names of the modelled fields.
var metadataFieldNames = func() map[string]bool {
	t := reflect.TypeFor[clientMetadataFields]()
	names := make(map[string]bool, t.NumField())
	for i := range t.NumField() {
		if name, _, _ := strings.Cut(t.Field(i).Tag.Get("json"), ","); name != "" && name != "-" {
			names[name] = true
		}
	}
	return names
}()

func isMetadataField(name string) bool { return metadataFieldNames[name] }

// Secret is a string that never shows itself: formatted with any fmt verb,
// logged with log/slog (whose handlers use fmt or encoding/json) or encoded
// as JSON, it reads "[redacted]" (or "" when empty). Convert it with
// string(s) to use it.
type Secret string

const redacted = "[redacted]"

func (s Secret) redacted() string {
	if s == "" {
		return ""
	}
	return redacted
}

// Format writes the redacted form for every verb, %x and %d included.
func (s Secret) Format(f fmt.State, verb rune) {
	if verb == 'v' && f.Flag('#') || verb == 'q' {
		fmt.Fprintf(f, "%q", s.redacted())
		return
	}
	io.WriteString(f, s.redacted())
}

// MarshalJSON encodes the secret redacted; stores use their own encoding.
func (s Secret) MarshalJSON() ([]byte, error) { return json.Marshal(s.redacted()) }

// credentials are what a provider issued at registration (RFC 7591 §3.2.1),
// with the metadata it registered and the fingerprint of the request that
// produced them. Printing, logging or JSON-encoding credentials never shows
// ClientSecret or RegistrationAccessToken, whatever the verb.
type credentials struct {
	Issuer                  string
	ClientID                string
	ClientSecret            Secret
	ClientSecretExpiresAt   time.Time // zero: never expires
	ClientIDIssuedAt        time.Time // zero: not reported
	RegistrationAccessToken Secret
	RegistrationClientURI   string
	Metadata                ClientMetadata // as registered, including values the provider replaced
	Fingerprint             string         // of the issuer and metadata that were asked for
	RegisteredAt            time.Time      // when the client or its current secret was obtained
	AuthStyle               string         // how the client authenticates when not as the RFC says: styleRawBasic, stylePost or styleIssuerAudience
}

// Ways of sending the client secret to the token endpoint besides the one
// RFC 6749 §2.3.1 prescribes for the registered method (HTTP Basic with
// form-encoded id and secret, or the form body for client_secret_post),
// learnt from a provider that refused it.
const (
	styleRawBasic = "basic-raw" // HTTP Basic without form-encoding
	stylePost     = "post"      // in the form body

	// styleIssuerAudience addresses client assertions to the issuer rather
	// than to the token endpoint (auth.go).
	styleIssuerAudience = "aud-issuer"
)

// expiresWithin reports whether the client secret expires before now+skew.
func (c *credentials) expiresWithin(now time.Time, skew time.Duration) bool {
	return !c.ClientSecretExpiresAt.IsZero() && !now.Add(skew).Before(c.ClientSecretExpiresAt)
}

// authMethod is the token endpoint authentication method in force.
func (c *credentials) authMethod() string {
	if c.Metadata.TokenEndpointAuthMethod == "" {
		return "client_secret_basic" // OIDC DCR §2 default
	}
	return c.Metadata.TokenEndpointAuthMethod
}

// storedCredentials is the persisted form of credentials.
type storedCredentials struct {
	Version                 int          `json:"version"`
	Issuer                  string       `json:"issuer"`
	ClientID                string       `json:"client_id"`
	ClientSecret            string       `json:"client_secret,omitempty"`
	ClientSecretExpiresAt   int64        `json:"client_secret_expires_at,omitempty"`
	ClientIDIssuedAt        int64        `json:"client_id_issued_at,omitempty"`
	RegistrationAccessToken string       `json:"registration_access_token,omitempty"`
	RegistrationClientURI   string       `json:"registration_client_uri,omitempty"`
	Metadata                metadataJSON `json:"metadata"`
	Fingerprint             string       `json:"fingerprint"`
	RegisteredAt            int64        `json:"registered_at"`
	AuthStyle               string       `json:"auth_style,omitempty"`
}

func encodeCredentials(c *credentials) ([]byte, error) {
	return json.Marshal(storedCredentials{
		Version: 1, Issuer: c.Issuer, ClientID: c.ClientID, ClientSecret: string(c.ClientSecret),
		ClientSecretExpiresAt: unixOrZero(c.ClientSecretExpiresAt), ClientIDIssuedAt: unixOrZero(c.ClientIDIssuedAt),
		RegistrationAccessToken: string(c.RegistrationAccessToken), RegistrationClientURI: c.RegistrationClientURI,
		Metadata: metadataJSON(c.Metadata), Fingerprint: c.Fingerprint, RegisteredAt: unixOrZero(c.RegisteredAt), AuthStyle: c.AuthStyle,
	})
}

func decodeCredentials(b []byte) (*credentials, error) {
	var s storedCredentials
	if err := json.Unmarshal(b, &s); err != nil {
		return nil, fmt.Errorf("%w: stored credentials: %v", ErrCorruptStore, err)
	}
	if s.Version != 1 || s.ClientID == "" {
		return nil, fmt.Errorf("%w: stored credentials: version %d, client_id %q", ErrCorruptStore, s.Version, s.ClientID)
	}
	return &credentials{
		Issuer: s.Issuer, ClientID: s.ClientID, ClientSecret: Secret(s.ClientSecret),
		ClientSecretExpiresAt: timeOrZero(s.ClientSecretExpiresAt), ClientIDIssuedAt: timeOrZero(s.ClientIDIssuedAt),
		RegistrationAccessToken: Secret(s.RegistrationAccessToken), RegistrationClientURI: s.RegistrationClientURI,
		Metadata: ClientMetadata(s.Metadata), Fingerprint: s.Fingerprint, RegisteredAt: timeOrZero(s.RegisteredAt), AuthStyle: s.AuthStyle,
	}, nil
}

func unixOrZero(t time.Time) int64 {
	if t.IsZero() {
		return 0
	}
	return t.Unix()
}

func timeOrZero(sec int64) time.Time {
	if sec <= 0 {
		return time.Time{}
	}
	return time.Unix(sec, 0)
}

// fingerprint identifies a registration request: the issuer and the
// requested metadata, but for the relying party's public keys (jwks), which
// rotate without changing the configuration and are updated on their own
// (keys.go). credentials whose fingerprint differs were issued for another
// configuration.
func fingerprint(issuer string, m ClientMetadata) string {
	if _, ok := m.Extra["jwks"]; ok {
		m.Extra = cloneMap(m.Extra)
		delete(m.Extra, "jwks")
	}
	b, _ := json.Marshal(metadataJSON(m)) // object keys of maps are sorted, struct order is fixed
	h := sha256.New()
	h.Write([]byte(issuer))
	h.Write([]byte{0})
	h.Write(b)
	return hex.EncodeToString(h.Sum(nil))
}

// RegistrationError is a failed registration or client-configuration
// request: an error response of RFC 7591 §3.2.2 or RFC 7592, or a response
// the client could not accept.
type RegistrationError struct {
	StatusCode       int    // HTTP status, 0 if the failure was not an HTTP error status
	ErrorCode        string // "error" member or WWW-Authenticate error, e.g. "invalid_redirect_uri"
	ErrorDescription string // "error_description" member
	Err              error  // why the client refused an otherwise successful response, if it did
}

// Error implements error.
func (e *RegistrationError) Error() string {
	var b strings.Builder
	b.WriteString("oidcrp: registration")
	if e.StatusCode != 0 {
		fmt.Fprintf(&b, ": HTTP %d", e.StatusCode)
	}
	if e.ErrorCode != "" {
		fmt.Fprintf(&b, ": %s", e.ErrorCode)
	}
	if e.ErrorDescription != "" {
		fmt.Fprintf(&b, ": %s", e.ErrorDescription)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// Unwrap returns why the client refused the response, if it did.
func (e *RegistrationError) Unwrap() error { return e.Err }

// clientInfo is a client information response (RFC 7591 §3.2.1, RFC 7592 §3).
type clientInfo struct {
	ClientID                string          `json:"client_id"`
	ClientSecret            string          `json:"client_secret"`
	ClientSecretExpiresAt   json.RawMessage `json:"client_secret_expires_at"` // see unixSeconds
	ClientIDIssuedAt        json.RawMessage `json:"client_id_issued_at"`
	RegistrationAccessToken string          `json:"registration_access_token"`
	RegistrationClientURI   string          `json:"registration_client_uri"`
}

// unixSeconds decodes client_id_issued_at or client_secret_expires_at: a
// number of seconds since 1970-01-01T00:00:00Z (RFC 7591 §3.2.1). Some
// providers send it as a JSON string ("1767225600", "0"), others with a
// fraction (1767225600.0); both are accepted, the fraction dropped. Absent
// or null, it is not set. Anything else (garbage, a negative number) is an
// error naming the member and its value, as taking it for "not set" could
// turn an expiring secret into one that never expires.
func unixSeconds(name string, raw json.RawMessage) (sec int64, set bool, err error) {
	s := string(raw)
	if s == "" || s == "null" {
		return 0, false, nil
	}
	if strings.HasPrefix(s, `"`) && json.Unmarshal(raw, &s) != nil {
		s = string(raw)
	}
	bad := fmt.Errorf("bad %s %q: want seconds since 1970 as a number", name, truncate(s, 40))
	// The text of a non-negative JSON number, whether it came bare or quoted.
	if s == "" || s[0] < '0' || s[0] > '9' || !json.Valid([]byte(s)) {
		return 0, true, bad
	}
	if n, err := strconv.ParseInt(s, 10, 64); err == nil {
		return n, true, nil
	}
	f, err := strconv.ParseFloat(s, 64)
	if err != nil || f >= 1<<53 {
		return 0, true, bad
	}
	return int64(f), true, nil
}

// registrar talks to a provider's registration endpoint and client
// configuration endpoints.
type registrar struct {
	client *http.Client
	now    func() time.Time
}

// register performs RFC 7591 §3.1 registration and validates the answer.
func (g registrar) register(ctx context.Context, issuer, endpoint, initialToken string, want ClientMetadata) (*credentials, error) {
	body, err := json.Marshal(metadataJSON(want))
	if err != nil {
		return nil, fmt.Errorf("oidcrp: encode client metadata: %w", err)
	}
	status, resp, err := g.do(ctx, http.MethodPost, endpoint, initialToken, body)
	if err != nil {
		return nil, err
	}
	if status != http.StatusCreated && status != http.StatusOK {
		return nil, registrationFailure(status, resp)
	}
	return g.credentials(issuer, want, nil, resp)
}

// read fetches the current registration (RFC 7592 §2.1). A 401 means the
// registration no longer exists; it is reported as a RegistrationError with
// StatusCode 401.
func (g registrar) read(ctx context.Context, c *credentials) (*credentials, error) {
	if c.RegistrationClientURI == "" || c.RegistrationAccessToken == "" {
		return nil, errors.New("oidcrp: registration has no client configuration endpoint")
	}
	status, resp, err := g.do(ctx, http.MethodGet, c.RegistrationClientURI, string(c.RegistrationAccessToken), nil)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, registrationFailure(status, resp)
	}
	fresh, err := g.credentials(c.Issuer, c.Metadata, c, resp)
	if err != nil {
		return nil, err
	}
	fresh.Fingerprint = c.Fingerprint // a read changes nothing that was asked for
	return fresh, nil
}

// update replaces the registered metadata with want (RFC 7592 §2.2).
func (g registrar) update(ctx context.Context, c *credentials, want ClientMetadata) (*credentials, error) {
	if c.RegistrationClientURI == "" || c.RegistrationAccessToken == "" {
		return nil, errors.New("oidcrp: registration has no client configuration endpoint")
	}
	obj := map[string]any{}
	b, _ := json.Marshal(metadataJSON(want))
	_ = json.Unmarshal(b, &obj)
	obj["client_id"] = c.ClientID
	if c.ClientSecret != "" {
		obj["client_secret"] = string(c.ClientSecret)
	}
	body, _ := json.Marshal(obj)
	status, resp, err := g.do(ctx, http.MethodPut, c.RegistrationClientURI, string(c.RegistrationAccessToken), body)
	if err != nil {
		return nil, err
	}
	if status != http.StatusOK {
		return nil, registrationFailure(status, resp)
	}
	return g.credentials(c.Issuer, want, c, resp)
}

// remove deletes the registration at the provider (RFC 7592 §2.3). A
// registration that is already gone (401) counts as removed.
func (g registrar) remove(ctx context.Context, c *credentials) error {
	if c.RegistrationClientURI == "" || c.RegistrationAccessToken == "" {
		return errors.New("oidcrp: registration has no client configuration endpoint")
	}
	status, resp, err := g.do(ctx, http.MethodDelete, c.RegistrationClientURI, string(c.RegistrationAccessToken), nil)
	if err != nil {
		return err
	}
	switch status {
	case http.StatusNoContent, http.StatusOK, http.StatusUnauthorized:
		return nil
	}
	return registrationFailure(status, resp)
}

func (g registrar) do(ctx context.Context, method, endpoint, bearer string, body []byte) (int, []byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, endpoint, rd)
	if err != nil {
		return 0, nil, fmt.Errorf("oidcrp: registration request: %w", err)
	}
	req.Header.Set("Accept", "application/json")
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, err := g.client.Do(req)
	if err != nil {
		return 0, nil, fmt.Errorf("oidcrp: registration %s: %w", method, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes+1))
	if err != nil {
		return 0, nil, fmt.Errorf("oidcrp: registration %s: read response: %w", method, err)
	}
	if len(b) > maxResponseBytes {
		return 0, nil, &RegistrationError{StatusCode: resp.StatusCode, Err: errors.New("response larger than 1 MiB")}
	}
	if resp.StatusCode == http.StatusUnauthorized && len(b) == 0 {
		b = bearerErrorJSON(resp.Header.Get("WWW-Authenticate"))
	}
	return resp.StatusCode, b, nil
}

// bearerErrorJSON turns an RFC 6750 §3 challenge into the JSON error form.
func bearerErrorJSON(challenge string) []byte {
	obj := map[string]string{}
	for _, part := range strings.Split(strings.TrimPrefix(challenge, "Bearer"), ",") {
		k, v, ok := strings.Cut(strings.TrimSpace(part), "=")
		if ok && (k == "error" || k == "error_description") {
			obj[k] = strings.Trim(v, `"`)
		}
	}
	b, _ := json.Marshal(obj)
	return b
}

func registrationFailure(status int, body []byte) error {
	e := &RegistrationError{StatusCode: status}
	var eb struct {
		Error            string `json:"error"`
		ErrorDescription string `json:"error_description"`
	}
	if json.Unmarshal(body, &eb) == nil {
		e.ErrorCode, e.ErrorDescription = eb.Error, truncate(eb.ErrorDescription, 200)
	}
	return e
}

// credentials validates a client information response and turns it into
// credentials. prev, when set, is the registration being read or updated:
// rotated secrets and tokens replace its values, others are kept.
func (g registrar) credentials(issuer string, want ClientMetadata, prev *credentials, body []byte) (*credentials, error) {
	refuse := func(format string, args ...any) error {
		return &RegistrationError{Err: fmt.Errorf(format, args...)}
	}
	var info clientInfo
	var meta metadataJSON
	if err := json.Unmarshal(body, &info); err != nil {
		return nil, refuse("response is not a JSON object: %v", err)
	}
	if err := json.Unmarshal(body, &meta); err != nil {
		return nil, refuse("response metadata: %v", err)
	}
	if info.ClientID == "" {
		return nil, refuse("response has no client_id")
	}
	if meta.TokenEndpointAuthMethod == "" {
		// The provider accepted the request without saying which method it
		// registered. RFC 7591 §3.2.1 has it return every registered value,
		// those it replaced included, so an absent member replaced nothing:
		// use the method asked for. OIDC DCR §2's client_secret_basic is the
		// default of a request that names none, which ours never is; taking it
		// here would fail the first login of a client that asked for
		// client_secret_post.
		meta.TokenEndpointAuthMethod = want.TokenEndpointAuthMethod
	}
	if prev != nil && info.ClientID != prev.ClientID {
		return nil, refuse("client_id changed from %q to %q", prev.ClientID, info.ClientID)
	}
	for _, u := range want.RedirectURIs {
		if !slices.Contains(meta.RedirectURIs, u) {
			return nil, refuse("registered redirect_uris %q lack %q", meta.RedirectURIs, u)
		}
	}
	if len(meta.ResponseTypes) > 0 && !slices.Contains(meta.ResponseTypes, "code") {
		return nil, refuse("registered response_types %q lack \"code\"", meta.ResponseTypes)
	}
	if len(meta.GrantTypes) > 0 && !slices.Contains(meta.GrantTypes, "authorization_code") {
		return nil, refuse("registered grant_types %q lack \"authorization_code\"", meta.GrantTypes)
	}
	c := &credentials{
		Issuer: issuer, ClientID: info.ClientID, Metadata: ClientMetadata(meta),
		Fingerprint: fingerprint(issuer, want), RegisteredAt: g.now(),
		ClientSecret: Secret(info.ClientSecret), RegistrationAccessToken: Secret(info.RegistrationAccessToken),
		RegistrationClientURI: info.RegistrationClientURI,
	}
	if prev != nil {
		// RFC 7592 §2.1: values not returned stay; new ones replace the old at once.
		if c.ClientSecret == "" || c.ClientSecret == prev.ClientSecret {
			c.RegisteredAt = prev.RegisteredAt // the secret's age did not change
			c.ClientSecret, c.ClientSecretExpiresAt = prev.ClientSecret, prev.ClientSecretExpiresAt
		}
		if c.RegistrationAccessToken == "" {
			c.RegistrationAccessToken = prev.RegistrationAccessToken
		}
		if c.RegistrationClientURI == "" {
			c.RegistrationClientURI = prev.RegistrationClientURI
		}
		c.ClientIDIssuedAt = prev.ClientIDIssuedAt
		c.AuthStyle = prev.AuthStyle // a property of the provider, learnt once
	}
	if (c.RegistrationAccessToken == "") != (c.RegistrationClientURI == "") {
		return nil, refuse("registration_access_token and registration_client_uri must come together")
	}
	if c.RegistrationClientURI != "" {
		// OIDC DCR §3.2: https, as the registration access token goes there.
		u, err := url.Parse(c.RegistrationClientURI)
		if err != nil || !u.IsAbs() || u.Host == "" || (u.Scheme != "https" && !(u.Scheme == "http" && strings.HasPrefix(issuer, "http://"))) {
			return nil, refuse("registration_client_uri %q must be an absolute https URL", truncate(c.RegistrationClientURI, 200))
		}
	}
	switch m := c.authMethod(); m {
	case "client_secret_basic", "client_secret_post", "client_secret_jwt":
		if c.ClientSecret == "" {
			return nil, refuse("token_endpoint_auth_method %q but no client_secret", m)
		}
	case "private_key_jwt":
		// The client authenticates with the relying party's key: a secret
		// the provider issued anyway is neither needed nor kept.
		c.ClientSecret, c.ClientSecretExpiresAt, info.ClientSecretExpiresAt = "", time.Time{}, nil
	case "none":
	default:
		return nil, refuse("unsupported token_endpoint_auth_method %q", m)
	}
	sec, set, err := unixSeconds("client_secret_expires_at", info.ClientSecretExpiresAt)
	if err != nil {
		return nil, &RegistrationError{Err: err}
	}
	if set {
		c.ClientSecretExpiresAt = timeOrZero(sec)
	}
	sec, set, err = unixSeconds("client_id_issued_at", info.ClientIDIssuedAt)
	if err != nil {
		return nil, &RegistrationError{Err: err}
	}
	if set {
		c.ClientIDIssuedAt = timeOrZero(sec)
	}
	return c, nil
}

func truncate(s string, n int) string {
	if len(s) <= n {
		return s
	}
	return s[:n] + "…"
}

// wantMetadata is the metadata to register: the defaults completed with
// Config.Metadata and what the provider supports.
func wantMetadata(cfg *Config, disc *discovery, own *rpKey) (ClientMetadata, error) {
	m := cfg.Metadata
	m.Extra = cloneMap(m.Extra)
	if !slices.Contains(m.RedirectURIs, cfg.RedirectURL) {
		m.RedirectURIs = append(slices.Clone(m.RedirectURIs), cfg.RedirectURL)
	}
	if m.PostLogoutRedirectURIs == nil && disc.EndSessionEndpoint != "" {
		m.PostLogoutRedirectURIs = []string{cfg.PostLogoutRedirectURL}
	}
	origin := redirectOrigin(cfg.RedirectURL)
	switch {
	case m.BackchannelLogoutURI != "" || m.FrontchannelLogoutURI != "":
		// Set by the application: registered as they are.
	case disc.BackchannelLogoutSupported:
		m.BackchannelLogoutURI = origin + cfg.BackchannelLogoutPath
		m.BackchannelLogoutSessionRequired = m.BackchannelLogoutSessionRequired || disc.BackchannelLogoutSessionSupported
	case disc.FrontchannelLogoutSupported:
		// Only for providers without back-channel logout: it needs no
		// browser, and third-party cookies play no part in it.
		m.FrontchannelLogoutURI = origin + cfg.FrontchannelLogoutPath
		m.FrontchannelLogoutSessionRequired = m.FrontchannelLogoutSessionRequired || disc.FrontchannelLogoutSessionSupported
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
		m.Scope = strings.Join(cfg.Scopes, " ")
	}
	if cfg.DPoP {
		if m.Extra == nil {
			m.Extra = map[string]any{}
		}
		m.Extra["dpop_bound_access_tokens"] = true // RFC 9449 §5.2
	}
	if m.TokenEndpointAuthMethod == "" {
		supported := disc.TokenEndpointAuthMethodsSupported
		if len(supported) == 0 {
			supported = []string{"client_secret_basic"} // Discovery §3 default
		}
		for _, method := range []string{"private_key_jwt", "client_secret_basic", "client_secret_post", "none"} {
			if method == "private_key_jwt" && (cfg.ClientID != "" || pickSigningAlg(disc.TokenEndpointAuthSigningAlgValuesSupported, own) == "") {
				continue // no key the provider accepts assertions from
			}
			if slices.Contains(supported, method) {
				m.TokenEndpointAuthMethod = method
				break
			}
		}
		if m.TokenEndpointAuthMethod == "" {
			return m, fmt.Errorf("oidcrp: provider supports none of private_key_jwt, client_secret_basic, client_secret_post, none (it lists %q)", supported)
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
