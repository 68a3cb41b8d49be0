package devop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

var jwtMethods = []string{"private_key_jwt", "client_secret_jwt", "client_secret_basic"}

// clientKey is a client's signing key with its kid.
type clientKey struct {
	priv any
	alg  jose.SignatureAlgorithm
	kid  string
}

func newECKey(t *testing.T, kid string) clientKey {
	k, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	return clientKey{k, jose.ES256, kid}
}

// jwks is the public JWK Set of keys as registration metadata.
func jwks(t *testing.T, keys ...clientKey) map[string]any {
	set := jose.JSONWebKeySet{}
	for _, k := range keys {
		var pub any
		switch p := k.priv.(type) {
		case *ecdsa.PrivateKey:
			pub = &p.PublicKey
		case *rsa.PrivateKey:
			pub = &p.PublicKey
		}
		set.Keys = append(set.Keys, jose.JSONWebKey{Key: pub, KeyID: k.kid, Algorithm: string(k.alg), Use: "sig"})
	}
	b, _ := json.Marshal(set)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// assertion signs claims with key (an HMAC secret as []byte, or a
// clientKey).
func assertion(t *testing.T, key any, claims map[string]any) string {
	t.Helper()
	var sk jose.SigningKey
	opts := &jose.SignerOptions{}
	switch k := key.(type) {
	case clientKey:
		sk = jose.SigningKey{Algorithm: k.alg, Key: k.priv}
		opts = opts.WithHeader("kid", k.kid)
	case []byte:
		sk = jose.SigningKey{Algorithm: jose.HS256, Key: k}
	}
	s, err := jose.NewSigner(sk, opts)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := json.Marshal(claims)
	jws, err := s.Sign(b)
	if err != nil {
		t.Fatal(err)
	}
	out, _ := jws.CompactSerialize()
	return out
}

// claimsFor are valid assertion claims of client id at e's token endpoint.
func (e *env) claimsFor(id string) map[string]any {
	now := time.Now()
	return map[string]any{"iss": id, "sub": id, "aud": e.url("/token"), "jti": randomToken(8),
		"iat": now.Unix(), "exp": now.Add(time.Minute).Unix()}
}

// postAssertion posts an unknown authorization code with jwt as the client
// assertion to path: 400 invalid_grant means the client authenticated.
func (e *env) postAssertion(path, jwt string) (*http.Response, map[string]any) {
	e.t.Helper()
	form := url.Values{"grant_type": {"authorization_code"}, "code": {"unknown"}, "token": {"unknown"},
		"client_assertion_type": {assertionType}, "client_assertion": {jwt}}
	req, _ := http.NewRequest(http.MethodPost, e.url(path), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, b := e.do(e.hc, req)
	if len(b) == 0 {
		return resp, nil
	}
	return resp, decodeJSON(e.t, b)
}

func TestPrivateKeyJWT(t *testing.T) {
	e := newEnv(t, Options{AuthMethods: jwtMethods}, "")
	_, b := e.get("/.well-known/openid-configuration")
	if doc := decodeJSON(t, b); !strings.Contains(string(b), `"token_endpoint_auth_signing_alg_values_supported":["ES256","RS256","HS256"]`) {
		t.Errorf("discovery: %v", doc)
	}
	key := newECKey(t, "k1")
	reg := e.register(clientMeta("private_key_jwt", map[string]any{"jwks": jwks(t, key), "token_endpoint_auth_signing_alg": "ES256"}))
	if _, has := reg["client_secret"]; has {
		t.Errorf("a private_key_jwt client got a secret: %v", reg)
	}
	id := reg["client_id"].(string)

	good := e.claimsFor(id)
	if resp, body := e.postAssertion("/token", assertion(t, key, good)); resp.StatusCode != http.StatusBadRequest || body["error"] != "invalid_grant" {
		t.Fatalf("a valid assertion: %d %v", resp.StatusCode, body)
	}
	resp, body := e.postAssertion("/token", assertion(t, key, good))
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_client")
	if !strings.Contains(body["error_description"].(string), "jti") {
		t.Errorf("replayed jti: %v", body)
	}

	rsaKey, _ := rsa.GenerateKey(rand.Reader, 2048)
	other := newECKey(t, "k1")
	for name, tc := range map[string]struct {
		key    clientKey
		change func(map[string]any)
		want   string
	}{
		"bad aud":       {key, func(c map[string]any) { c["aud"] = "https://elsewhere.example/token" }, "aud"},
		"expired":       {key, func(c map[string]any) { c["exp"] = time.Now().Add(-time.Second).Unix() }, "expired"},
		"exp too far":   {key, func(c map[string]any) { c["exp"] = time.Now().Add(time.Hour).Unix() }, "exp"},
		"no exp":        {key, func(c map[string]any) { delete(c, "exp") }, "exp"},
		"no jti":        {key, func(c map[string]any) { delete(c, "jti") }, "jti"},
		"sub differs":   {key, func(c map[string]any) { c["sub"] = "someone" }, "sub"},
		"unknown iss":   {key, func(c map[string]any) { c["iss"], c["sub"] = "nobody", "nobody" }, "unknown client"},
		"wrong key":     {other, func(map[string]any) {}, "does not verify"},
		"wrong alg":     {clientKey{rsaKey, jose.RS256, "k1"}, func(map[string]any) {}, "alg RS256"},
		"audience list": {key, func(c map[string]any) { c["aud"] = []string{"x", e.url("/token")} }, ""},
	} {
		c := e.claimsFor(id)
		tc.change(c)
		resp, body := e.postAssertion("/token", assertion(t, tc.key, c))
		if tc.want == "" {
			if body["error"] != "invalid_grant" {
				t.Errorf("%s: %d %v", name, resp.StatusCode, body)
			}
			continue
		}
		wantError(t, resp, body, http.StatusUnauthorized, "invalid_client")
		if d, _ := body["error_description"].(string); !strings.Contains(d, tc.want) {
			t.Errorf("%s: %q does not say %q", name, d, tc.want)
		}
	}
	// The client's secret-based methods are refused.
	resp, body = e.token(creds{id, "", "client_secret_post"}, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {"x"}})
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_client")

	// Issuer as aud works, and assertions work at PAR and revocation too.
	c := e.claimsFor(id)
	c["aud"] = e.p.Issuer()
	if _, body := e.postAssertion("/token", assertion(t, key, c)); body["error"] != "invalid_grant" {
		t.Errorf("issuer as aud: %v", body)
	}
	if resp, _ := e.postAssertion("/revoke", assertion(t, key, e.claimsFor(id))); resp.StatusCode != http.StatusOK {
		t.Errorf("revocation with an assertion: %d", resp.StatusCode)
	}
	got := e.p.Assertions()
	if len(got) != 4 || got[3].Endpoint != "revocation" || got[0].Method != "private_key_jwt" || got[0].KeyID != "k1" || got[0].Claims["jti"] != good["jti"] {
		t.Errorf("Assertions: %+v", got)
	}
	if n := e.p.Stats().ClientAssertions; n != 4 {
		t.Errorf("Stats.ClientAssertions %d, want 4", n)
	}
}

func TestPrivateKeyJWTAtPAR(t *testing.T) {
	e := newEnv(t, Options{AuthMethods: jwtMethods, PAR: true}, "")
	key := newECKey(t, "k")
	id := e.register(clientMeta("private_key_jwt", map[string]any{"jwks": jwks(t, key)}))["client_id"].(string)
	_, challenge := pkcePair()
	form := authParams(id, challenge, "st", "n")
	form.Set("client_assertion_type", assertionType)
	form.Set("client_assertion", assertion(t, key, e.claimsFor(id)))
	req, _ := http.NewRequest(http.MethodPost, e.url("/par"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, b := e.do(e.hc, req)
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("PAR with an assertion: %d %s", resp.StatusCode, b)
	}
	if a := e.p.Assertions(); len(a) != 1 || a[0].Endpoint != "par" {
		t.Errorf("Assertions: %+v", a)
	}
}

func TestIssuerAudienceOnly(t *testing.T) {
	e := newEnv(t, Options{AuthMethods: jwtMethods, AssertionIssuerAudienceOnly: true}, "")
	key := newECKey(t, "k")
	id := e.register(clientMeta("private_key_jwt", map[string]any{"jwks": jwks(t, key)}))["client_id"].(string)
	resp, body := e.postAssertion("/token", assertion(t, key, e.claimsFor(id)))
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_client")
	c := e.claimsFor(id)
	c["aud"] = e.p.Issuer()
	if _, body := e.postAssertion("/token", assertion(t, key, c)); body["error"] != "invalid_grant" {
		t.Errorf("issuer as aud: %v", body)
	}
}

func TestClientSecretJWT(t *testing.T) {
	e := newEnv(t, Options{AuthMethods: jwtMethods}, "")
	reg := e.register(clientMeta("client_secret_jwt", nil))
	id, secret := reg["client_id"].(string), reg["client_secret"].(string)
	if secret == "" {
		t.Fatal("a client_secret_jwt client got no secret")
	}
	if _, body := e.postAssertion("/token", assertion(t, []byte(secret), e.claimsFor(id))); body["error"] != "invalid_grant" {
		t.Errorf("a valid HS256 assertion: %v", body)
	}
	resp, body := e.postAssertion("/token", assertion(t, []byte("not the secret, but as long as it"), e.claimsFor(id)))
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_client")
	// An asymmetric assertion is not this client's method.
	resp, body = e.postAssertion("/token", assertion(t, newECKey(t, "k"), e.claimsFor(id)))
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_client")
	if a := e.p.Assertions(); len(a) != 1 || a[0].Method != "client_secret_jwt" || a[0].Alg != "HS256" {
		t.Errorf("Assertions: %+v", a)
	}
}

func TestKeyRegistrationValidation(t *testing.T) {
	e := newEnv(t, Options{AuthMethods: jwtMethods}, "")
	key := newECKey(t, "k")
	privSet := func() map[string]any {
		b, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: key.priv, KeyID: "k"}}})
		var m map[string]any
		_ = json.Unmarshal(b, &m)
		return m
	}()
	for name, meta := range map[string]map[string]any{
		"no keys":          clientMeta("private_key_jwt", nil),
		"private key":      clientMeta("private_key_jwt", map[string]any{"jwks": privSet}),
		"HMAC for keys":    clientMeta("private_key_jwt", map[string]any{"jwks": jwks(t, key), "token_endpoint_auth_signing_alg": "HS256"}),
		"keys for HMAC":    clientMeta("client_secret_jwt", map[string]any{"token_endpoint_auth_signing_alg": "ES256"}),
		"unsupported alg":  clientMeta("private_key_jwt", map[string]any{"jwks": jwks(t, key), "token_endpoint_auth_signing_alg": "PS512"}),
		"not a JWK Set":    clientMeta("private_key_jwt", map[string]any{"jwks": map[string]any{"keys": "no"}}),
		"method not liked": clientMeta("tls_client_auth", nil),
	} {
		resp, body := e.sendJSON(http.MethodPost, e.url("/register"), "", meta)
		if resp.StatusCode != http.StatusBadRequest || body["error"] != "invalid_client_metadata" {
			t.Errorf("%s: %d %v", name, resp.StatusCode, body)
		}
	}
	e = newEnv(t, Options{}, "")
	resp, _ := e.sendJSON(http.MethodPost, e.url("/register"), "", clientMeta("private_key_jwt", map[string]any{"jwks": jwks(t, key)}))
	if resp.StatusCode != http.StatusBadRequest {
		t.Errorf("private_key_jwt not in AuthMethods: %d", resp.StatusCode)
	}
}

func TestJWKSUpdateAndRefusal(t *testing.T) {
	e := newEnv(t, Options{AuthMethods: jwtMethods, RefuseKeyChanges: true}, "")
	k1, k2 := newECKey(t, "k1"), newECKey(t, "k2")
	reg := e.register(clientMeta("private_key_jwt", map[string]any{"jwks": jwks(t, k1)}))
	id, tok := reg["client_id"].(string), reg["registration_access_token"].(string)
	update := clientMeta("private_key_jwt", map[string]any{"client_id": id, "jwks": jwks(t, k1, k2)})
	resp, body := e.sendJSON(http.MethodPut, e.url("/register/"+id), tok, update)
	if resp.StatusCode != http.StatusBadRequest || body["error"] != "invalid_client_metadata" {
		t.Fatalf("refused key change: %d %v", resp.StatusCode, body)
	}
	if _, body := e.postAssertion("/token", assertion(t, k2, e.claimsFor(id))); body["error"] != "invalid_client" {
		t.Errorf("the refused key authenticates: %v", body)
	}
	// The same keys are no change.
	same := clientMeta("private_key_jwt", map[string]any{"client_id": id, "jwks": jwks(t, k1), "client_name": "renamed"})
	if resp, body := e.sendJSON(http.MethodPut, e.url("/register/"+id), tok, same); resp.StatusCode != http.StatusOK {
		t.Fatalf("update without a key change: %d %v", resp.StatusCode, body)
	}
	e.p.SetRefuseKeyChanges(false)
	resp, body = e.sendJSON(http.MethodPut, e.url("/register/"+id), tok, update)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("key change: %d %v", resp.StatusCode, body)
	}
	if _, has := body["client_secret"]; has {
		t.Errorf("an updated private_key_jwt client got a secret")
	}
	for _, k := range []clientKey{k1, k2} {
		if _, body := e.postAssertion("/token", assertion(t, k, e.claimsFor(id))); body["error"] != "invalid_grant" {
			t.Errorf("key %s after the update: %v", k.kid, body)
		}
	}
}

func TestJWKSURI(t *testing.T) {
	k1, k2 := newECKey(t, "k1"), newECKey(t, "k2")
	var mu sync.Mutex
	served := jwks(t, k1)
	rp := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		defer mu.Unlock()
		w.Header().Set("Content-Type", "application/jwk-set+json")
		_ = json.NewEncoder(w).Encode(served)
	}))
	t.Cleanup(rp.Close)
	e := newEnv(t, Options{AuthMethods: jwtMethods, HTTPClient: rp.Client()}, "")
	id := e.register(clientMeta("private_key_jwt", map[string]any{"jwks_uri": rp.URL + "/jwks"}))["client_id"].(string)
	for range 2 {
		if _, body := e.postAssertion("/token", assertion(t, k1, e.claimsFor(id))); body["error"] != "invalid_grant" {
			t.Fatalf("key at jwks_uri: %v", body)
		}
	}
	if n := e.p.Stats().JWKSFetches; n != 1 {
		t.Errorf("JWKSFetches %d, want 1: the set is cached", n)
	}
	// A new kid fetches the set again.
	mu.Lock()
	served = jwks(t, k1, k2)
	mu.Unlock()
	if _, body := e.postAssertion("/token", assertion(t, k2, e.claimsFor(id))); body["error"] != "invalid_grant" {
		t.Fatalf("a new key at jwks_uri: %v", body)
	}
	if n := e.p.Stats().JWKSFetches; n != 2 {
		t.Errorf("JWKSFetches %d, want 2", n)
	}
	// A key not there at all is refused after one more fetch.
	if _, body := e.postAssertion("/token", assertion(t, newECKey(t, "k3"), e.claimsFor(id))); body["error"] != "invalid_client" {
		t.Errorf("an unknown key: %v", body)
	}
}
