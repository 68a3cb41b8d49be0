package oidcrp

import (
	"context"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// jwtAuth lists the JWT client authentication methods first, as a provider
// that prefers them.
var jwtAuth = []string{"private_key_jwt", "client_secret_jwt", "client_secret_basic", "client_secret_post", "none"}

// storedCreds returns the raw credentials record of rp.
func storedCreds(t *testing.T, rp *RP) string {
	t.Helper()
	b, err := rp.cfg.Store.Load(context.Background(), rp.cfg.StoreKey)
	if err != nil {
		t.Fatalf("stored credentials: %v", err)
	}
	return string(b)
}

// storedKeySet returns the raw keys record of rp, "" when there is none.
func storedKeySet(t *testing.T, rp *RP) string {
	t.Helper()
	b, err := rp.cfg.Store.Load(context.Background(), rp.cfg.StoreKey+"#keys")
	if err != nil && err != ErrNotFound {
		t.Fatalf("stored keys: %v", err)
	}
	return string(b)
}

// checkAssertions checks the claims of every assertion the provider
// accepted (RFC 7523 §3): iss = sub = the client, a short exp, unique jtis,
// aud the token endpoint (or the issuer, when issuerAud).
func checkAssertions(t *testing.T, op *devop.Provider, clientID string, issuerAud bool) []devop.Assertion {
	t.Helper()
	aud := op.Issuer() + "/token"
	if issuerAud {
		aud = op.Issuer()
	}
	seen := map[any]bool{}
	as := op.Assertions()
	for _, a := range as {
		c := a.Claims
		exp, _ := c["exp"].(json.Number).Int64()
		iat, _ := c["iat"].(json.Number).Int64()
		if c["iss"] != clientID || c["sub"] != clientID || c["aud"] != aud || seen[c["jti"]] || exp-iat > 300 || exp <= iat {
			t.Errorf("assertion at %s: %v", a.Endpoint, c)
		}
		seen[c["jti"]] = true
	}
	return as
}

// endpoints counts assertions per endpoint.
func endpoints(as []devop.Assertion) map[string]int {
	out := map[string]int{}
	for _, a := range as {
		out[a.Endpoint]++
	}
	return out
}

// TestPrivateKeyJWTByDefault: a provider that takes private_key_jwt gets
// it: no client secret anywhere, the key in the store's #keys record and
// never printed, assertions at every client-authenticated endpoint.
func TestPrivateKeyJWTByDefault(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{AuthMethods: jwtAuth, PAR: true, IDTokenLifetime: 10 * time.Minute, AccessTokenLifetime: 5 * time.Minute},
		Config{KeepTokens: true, PushedAuthorization: true})
	e.login("/")
	c := e.op.Clients()[0]
	if c.AuthMethod != "private_key_jwt" || c.Secret != "" || c.Metadata["token_endpoint_auth_signing_alg"] != "ES256" {
		t.Fatalf("registered %s (secret %t, alg %v), want private_key_jwt with ES256 and no secret", c.AuthMethod, c.Secret != "", c.Metadata["token_endpoint_auth_signing_alg"])
	}
	if st := e.rp.Status(); st.AuthMethod != "private_key_jwt" {
		t.Errorf("Status.AuthMethod %q", st.AuthMethod)
	}
	if s := storedCreds(t, e.rp); strings.Contains(s, "client_secret\"") || strings.Contains(s, `"ClientSecret":"`) && !strings.Contains(s, `"ClientSecret":""`) {
		t.Errorf("the stored credentials hold a secret: %s", s)
	}
	keys := storedKeySet(t, e.rp)
	if !strings.Contains(keys, `"d":`) {
		t.Fatalf("the #keys record holds no private key: %.100s", keys)
	}
	var set storedKeys
	if err := json.Unmarshal([]byte(keys), &set); err != nil || len(set.Keys) != 1 {
		t.Fatalf("#keys: %v", err)
	}
	d := set.Keys[0].JWK
	db, _ := json.Marshal(d)
	var priv map[string]any
	_ = json.Unmarshal(db, &priv)
	k := e.rp.lc.keys.all()[0]
	for _, s := range []string{fmt.Sprintf("%v %+v %#v %s %x", k, k, k, k, k), fmt.Sprintf("%v %+v", e.rp.lc.keys.all(), e.rp.lc.cur.Load().creds), e.logs.String()} {
		if strings.Contains(s, priv["d"].(string)) {
			t.Errorf("the private key shows: %.200s", s)
		}
	}

	// Refresh, then logout revokes with assertions too.
	e.clock.Advance(5 * time.Minute)
	if status, _, _ := e.apiGet("/api"); status != http.StatusOK {
		t.Fatalf("after access token expiry: %d", status)
	}
	if form, _ := e.op.LastTokenRequest(); form.Get("grant_type") != "refresh_token" || form.Get("client_assertion") == "" || form.Has("client_secret") {
		t.Errorf("refresh request: %v", form)
	}
	e.postLogout()
	for i := 0; i < 1000 && endpoints(e.op.Assertions())["revocation"] < 2; i++ { // revocation runs after the logout's answer
		time.Sleep(10 * time.Millisecond)
	}
	got := endpoints(checkAssertions(t, e.op, c.ID, false))
	if got["par"] != 1 || got["token"] != 2 || got["revocation"] != 2 {
		t.Errorf("assertions per endpoint %v, want par 1, token 2 (exchange, refresh), revocation 2", got)
	}
	if form, h := e.op.LastPARRequest(); form.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || h.Get("Authorization") != "" {
		t.Errorf("PAR request: %v %v", form, h)
	}
}

// TestAssertionAudienceFallback: a provider that takes assertions
// addressed to its issuer only refuses the first, takes the second, and
// the way is stored: a replica uses it at once.
func TestAssertionAudienceFallback(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{AuthMethods: jwtAuth, AssertionIssuerAudienceOnly: true}, Config{})
	e.login("/")
	id := e.op.Clients()[0].ID
	if n := len(e.op.Assertions()); n != 1 {
		t.Errorf("%d assertions accepted, want 1", n)
	}
	if st := e.op.Stats(); st.Token != 2 || st.Registration != 1 {
		t.Errorf("%d token requests, %d registrations, want 2 and 1", st.Token, st.Registration)
	}
	if s := storedCreds(t, e.rp); !strings.Contains(s, styleIssuerAudience) {
		t.Errorf("the stored credentials do not say %q: %s", styleIssuerAudience, s)
	}
	replica := e.newRP(Config{Store: e.rp.cfg.Store})
	e.app.Config.Handler = e.handler(replica)
	e.browser.Jar, _ = cookiejar.New(nil)
	before := e.op.Stats().Token
	e.login("/other")
	if n := e.op.Stats().Token - before; n != 1 {
		t.Errorf("the replica made %d token requests, want 1", n)
	}
	checkAssertions(t, e.op, id, true)
}

// TestClientSecretJWTForced: client_secret_jwt asked for in the metadata
// signs assertions with the secret (HS256).
func TestClientSecretJWTForced(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{AuthMethods: jwtAuth}, Config{Metadata: ClientMetadata{TokenEndpointAuthMethod: "client_secret_jwt"}})
	e.login("/")
	c := e.op.Clients()[0]
	if c.AuthMethod != "client_secret_jwt" || c.Secret == "" {
		t.Fatalf("registered %s", c.AuthMethod)
	}
	as := checkAssertions(t, e.op, c.ID, false)
	if len(as) != 1 || as[0].Method != "client_secret_jwt" || as[0].Alg != "HS256" {
		t.Errorf("assertions %+v", as)
	}
	if storedKeySet(t, e.rp) != "" {
		t.Error("client_secret_jwt generated a key")
	}
}

// TestProviderDropsPrivateKeyJWT: a provider that registers
// client_secret_basic with a secret when private_key_jwt was asked for
// gets what it returned.
func TestProviderDropsPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	var asked any
	e := newEnv(t, devop.Options{AuthMethods: jwtAuth, ForceAuthMethod: "client_secret_basic",
		RegistrationRequest: func(m map[string]any) { asked = m["token_endpoint_auth_method"] }}, Config{})
	e.login("/")
	if asked != "private_key_jwt" {
		t.Errorf("asked for %v", asked)
	}
	if _, h := e.op.LastTokenRequest(); !strings.HasPrefix(h.Get("Authorization"), "Basic ") {
		t.Errorf("token request without Basic authentication: %v", h)
	}
	if n := len(e.op.Assertions()); n != 0 {
		t.Errorf("%d assertions", n)
	}
	if st := e.rp.Status(); st.AuthMethod != "client_secret_basic" {
		t.Errorf("Status.AuthMethod %q", st.AuthMethod)
	}
}

// TestAssertionSigningAlgorithm: the assertion key follows the provider's
// token_endpoint_auth_signing_alg_values_supported: ES256 where listed,
// RS256 where only it is, and no private_key_jwt at all (but the next
// method) where the provider takes neither.
func TestAssertionSigningAlgorithm(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name      string
		algs      []string
		method    string
		keyAlg    string
		jwsHeader string
	}{
		{"ES256 listed", []string{"RS256", "ES256", "HS256"}, "private_key_jwt", "ES256", `"alg":"ES256"`},
		{"RS256 only", []string{"RS256", "HS256"}, "private_key_jwt", "RS256", `"alg":"RS256"`},
		{"neither", []string{"PS256", "HS256"}, "client_secret_basic", "", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, devop.Options{AuthMethods: jwtAuth, Discovery: func(doc map[string]any) {
				doc["token_endpoint_auth_signing_alg_values_supported"] = tc.algs
			}}, Config{})
			e.login("/")
			c := e.op.Clients()[0]
			if c.AuthMethod != tc.method {
				t.Fatalf("registered %s, want %s", c.AuthMethod, tc.method)
			}
			if alg, _ := c.Metadata["token_endpoint_auth_signing_alg"].(string); alg != tc.keyAlg {
				t.Errorf("token_endpoint_auth_signing_alg %q, want %q", alg, tc.keyAlg)
			}
			form, _ := e.op.LastTokenRequest()
			header, _ := base64.RawURLEncoding.DecodeString(strings.Split(form.Get("client_assertion")+".", ".")[0])
			if !strings.Contains(string(header), tc.jwsHeader) || (tc.jwsHeader == "") != (form.Get("client_assertion") == "") {
				t.Errorf("client assertion header %s, want %s", header, tc.jwsHeader)
			}
		})
	}
}
