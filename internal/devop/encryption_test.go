package devop

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"net/http"
	"slices"
	"strings"
	"testing"

	jose "github.com/go-jose/go-jose/v4"
)

// encKeys are a client's encryption keys: two P-256 keys and an RSA key.
type encKeys struct {
	ec1, ec2 *ecdsa.PrivateKey
	rsa      *rsa.PrivateKey
}

func newEncKeys(t *testing.T) encKeys {
	t.Helper()
	ec1, err1 := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	ec2, err2 := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, err3 := rsa.GenerateKey(rand.Reader, 2048)
	if err1 != nil || err2 != nil || err3 != nil {
		t.Fatal(err1, err2, err3)
	}
	return encKeys{ec1, ec2, rk}
}

// jwks is the public set as registration metadata: a signing key first
// (never to be encrypted to), then ec1, ec2 and the RSA key.
func (k encKeys) jwks(t *testing.T) map[string]any {
	t.Helper()
	sig, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{
		{Key: &sig.PublicKey, KeyID: "sig", Use: "sig", Algorithm: "ES256"},
		{Key: &k.ec1.PublicKey, KeyID: "ec1", Use: "enc", Algorithm: "ECDH-ES"},
		{Key: &k.ec2.PublicKey, KeyID: "ec2", Use: "enc", Algorithm: "ECDH-ES"},
		{Key: &k.rsa.PublicKey, KeyID: "rsa", Use: "enc"},
	}}
	b, _ := json.Marshal(set)
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatal(err)
	}
	return m
}

// open decrypts a compact JWE with the key its kid names and returns the
// plaintext and the header.
func (k encKeys) open(t *testing.T, raw string) ([]byte, jose.Header) {
	t.Helper()
	jwe, err := jose.ParseEncryptedCompact(raw,
		[]jose.KeyAlgorithm{jose.ECDH_ES, jose.RSA_OAEP_256, jose.RSA_OAEP},
		[]jose.ContentEncryption{jose.A256GCM, jose.A128CBC_HS256})
	if err != nil {
		t.Fatalf("not a JWE: %v: %s", err, raw)
	}
	key := map[string]any{"ec1": k.ec1, "ec2": k.ec2, "rsa": k.rsa}[jwe.Header.KeyID]
	if key == nil {
		t.Fatalf("encrypted to unknown kid %q", jwe.Header.KeyID)
	}
	pt, err := jwe.Decrypt(key)
	if err != nil {
		t.Fatalf("decrypt: %v", err)
	}
	return pt, jwe.Header
}

// rawUserInfo fetches userinfo and returns the response and its body.
func (e *env) rawUserInfo(accessToken string) (*http.Response, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url("/userinfo"), nil)
	req.Header.Set("Authorization", "Bearer "+accessToken)
	return e.do(e.hc, req)
}

// encryptedLogin registers a client with extra metadata and keys, runs a
// code flow and returns the token response.
func (e *env) encryptedLogin(keys encKeys, extra map[string]any) (creds, map[string]any) {
	e.t.Helper()
	meta := map[string]any{"jwks": keys.jwks(e.t)}
	for k, v := range extra {
		meta[k] = v
	}
	c := credsOf(e.register(clientMeta("client_secret_basic", meta)))
	code, verifier := e.codeFor(c.id, "n-0S6_WzA2Mj")
	resp, body := e.token(c, codeForm(code, verifier))
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("token: %d %v", resp.StatusCode, body)
	}
	return c, body
}

func TestEncryptionDiscovery(t *testing.T) {
	e := newEnv(t, Options{AutoLogin: true}, "")
	_, b := e.get("/.well-known/openid-configuration")
	doc := decodeJSON(t, b)
	for _, what := range []string{"id_token", "userinfo"} {
		algs, _ := stringList(doc[what+"_encryption_alg_values_supported"])
		encs, _ := stringList(doc[what+"_encryption_enc_values_supported"])
		if !slices.Equal(algs, []string{"ECDH-ES", "RSA-OAEP-256", "RSA-OAEP"}) || !slices.Equal(encs, []string{"A256GCM", "A128CBC-HS256"}) {
			t.Errorf("%s encryption advertised as %v %v", what, algs, encs)
		}
	}
	if algs, _ := stringList(doc["userinfo_signing_alg_values_supported"]); !slices.Equal(algs, []string{"RS256"}) {
		t.Errorf("userinfo_signing_alg_values_supported = %v", algs)
	}
}

func TestEncryptedIDTokenAndUserInfo(t *testing.T) {
	keys := newEncKeys(t)
	e := newEnv(t, Options{AutoLogin: true}, "")
	c, body := e.encryptedLogin(keys, map[string]any{
		"id_token_encrypted_response_alg": "ECDH-ES", "id_token_encrypted_response_enc": "A256GCM",
		"userinfo_signed_response_alg": "RS256", "userinfo_encrypted_response_alg": "RSA-OAEP-256",
	})
	raw := body["id_token"].(string)
	if strings.Count(raw, ".") != 4 {
		t.Fatalf("ID token is not a compact JWE: %s", raw)
	}
	inner, h := keys.open(t, string(raw))
	if h.KeyID != "ec1" || h.Algorithm != "ECDH-ES" || h.ExtraHeaders["enc"] != "A256GCM" || h.ExtraHeaders["cty"] != "JWT" {
		t.Errorf("JWE header = %+v", h)
	}
	claims, _, err := e.verify(string(inner))
	if err != nil || claims["aud"] != c.id || claims["nonce"] != "n-0S6_WzA2Mj" {
		t.Fatalf("nested ID token: %v %v", claims, err)
	}

	resp, b := e.rawUserInfo(body["access_token"].(string))
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/jwt" {
		t.Fatalf("userinfo: %d %q", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	inner, h = keys.open(t, string(b))
	if h.KeyID != "rsa" || h.Algorithm != "RSA-OAEP-256" || h.ExtraHeaders["enc"] != "A128CBC-HS256" {
		t.Errorf("userinfo JWE header = %+v (enc defaults to A128CBC-HS256)", h)
	}
	claims, _, err = e.verify(string(inner))
	if err != nil || claims["iss"] != e.p.Issuer() || claims["aud"] != c.id || claims["sub"] != "demo-user" {
		t.Errorf("nested userinfo: %v %v", claims, err)
	}
}

func TestSignedOrEncryptedOnlyUserInfo(t *testing.T) {
	keys := newEncKeys(t)
	e := newEnv(t, Options{AutoLogin: true}, "")
	c, body := e.encryptedLogin(keys, map[string]any{"userinfo_signed_response_alg": "RS256"})
	if strings.Count(body["id_token"].(string), ".") != 2 {
		t.Error("ID token encrypted without registration")
	}
	resp, b := e.rawUserInfo(body["access_token"].(string))
	claims, _, err := e.verify(string(b))
	if resp.Header.Get("Content-Type") != "application/jwt" || err != nil || claims["aud"] != c.id {
		t.Errorf("signed userinfo: %q %v %v", resp.Header.Get("Content-Type"), claims, err)
	}

	_, body = e.encryptedLogin(keys, map[string]any{"userinfo_encrypted_response_alg": "ECDH-ES", "userinfo_encrypted_response_enc": "A256GCM"})
	resp, b = e.rawUserInfo(body["access_token"].(string))
	pt, h := keys.open(t, string(b))
	if resp.Header.Get("Content-Type") != "application/jwt" || h.ExtraHeaders["cty"] != nil {
		t.Errorf("encrypted userinfo: %q %+v", resp.Header.Get("Content-Type"), h)
	}
	if m := decodeJSON(t, pt); m["sub"] != "demo-user" {
		t.Errorf("encrypted-only userinfo holds %s, want the claims as JSON", pt)
	}
}

func TestEncryptionRegistrationValidation(t *testing.T) {
	keys := newEncKeys(t)
	e := newEnv(t, Options{AutoLogin: true}, "")
	jwks := keys.jwks(t)
	ecOnly := map[string]any{"keys": jwks["keys"].([]any)[:3]}
	for name, meta := range map[string]map[string]any{
		"symmetric alg":        {"jwks": jwks, "id_token_encrypted_response_alg": "A128KW"},
		"RSA1_5":               {"jwks": jwks, "userinfo_encrypted_response_alg": "RSA1_5"},
		"unsupported enc":      {"jwks": jwks, "id_token_encrypted_response_alg": "ECDH-ES", "id_token_encrypted_response_enc": "A192GCM"},
		"enc without alg":      {"jwks": jwks, "id_token_encrypted_response_enc": "A256GCM"},
		"no jwks":              {"id_token_encrypted_response_alg": "ECDH-ES"},
		"jwks_uri only":        {"jwks_uri": "https://rp.example.test/jwks", "id_token_encrypted_response_alg": "ECDH-ES"},
		"no key for the alg":   {"jwks": ecOnly, "id_token_encrypted_response_alg": "RSA-OAEP"},
		"userinfo signed HS":   {"userinfo_signed_response_alg": "HS256"},
		"userinfo signed none": {"userinfo_signed_response_alg": "none"},
		"alg not a string":     {"jwks": jwks, "id_token_encrypted_response_alg": 1},
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := e.sendJSON(http.MethodPost, e.url("/register"), "", clientMeta("client_secret_basic", meta))
			wantError(t, resp, body, http.StatusBadRequest, "invalid_client_metadata")
		})
	}
	if n := len(e.p.Clients()); n != 0 {
		t.Errorf("%d clients registered with invalid encryption metadata", n)
	}
}

func TestHostileEncryption(t *testing.T) {
	keys := newEncKeys(t)
	reg := map[string]any{
		"id_token_encrypted_response_alg": "RSA-OAEP-256", "id_token_encrypted_response_enc": "A256GCM",
		"userinfo_encrypted_response_alg": "ECDH-ES", "userinfo_signed_response_alg": "RS256",
	}
	t.Run("plain responses", func(t *testing.T) {
		e := newEnv(t, Options{AutoLogin: true, PlainResponses: true}, "")
		_, body := e.encryptedLogin(keys, reg)
		if _, _, err := e.verify(body["id_token"].(string)); err != nil {
			t.Errorf("ID token is not a plain JWS: %v", err)
		}
		resp, b := e.rawUserInfo(body["access_token"].(string))
		if resp.Header.Get("Content-Type") != "application/json" || decodeJSON(t, b)["sub"] != "demo-user" {
			t.Errorf("userinfo: %q %s", resp.Header.Get("Content-Type"), b)
		}
	})
	t.Run("foreign key", func(t *testing.T) {
		e := newEnv(t, Options{AutoLogin: true, EncryptToForeignKey: true}, "")
		_, body := e.encryptedLogin(keys, reg)
		jwe, err := jose.ParseEncryptedCompact(body["id_token"].(string), []jose.KeyAlgorithm{jose.RSA_OAEP_256}, []jose.ContentEncryption{jose.A256GCM})
		if err != nil || jwe.Header.KeyID != "rsa" {
			t.Fatalf("JWE %v kid %q, want the client's kid", err, jwe.Header.KeyID)
		}
		if _, err := jwe.Decrypt(keys.rsa); err == nil {
			t.Error("the client's key decrypts a token encrypted to a foreign key")
		}
	})
	t.Run("other alg and enc", func(t *testing.T) {
		e := newEnv(t, Options{AutoLogin: true, EncryptionAlg: "RSA-OAEP", EncryptionEnc: "A128CBC-HS256"}, "")
		_, body := e.encryptedLogin(keys, reg)
		_, h := keys.open(t, body["id_token"].(string))
		if h.Algorithm != "RSA-OAEP" || h.ExtraHeaders["enc"] != "A128CBC-HS256" {
			t.Errorf("header %+v, want RSA-OAEP and A128CBC-HS256", h)
		}
	})
	t.Run("last key", func(t *testing.T) {
		e := newEnv(t, Options{AutoLogin: true, EncryptToLastKey: true}, "")
		_, body := e.encryptedLogin(keys, reg)
		_, b := e.rawUserInfo(body["access_token"].(string))
		if _, h := keys.open(t, string(b)); h.KeyID != "ec2" {
			t.Errorf("userinfo encrypted to %q, want the last EC key ec2", h.KeyID)
		}
	})
}
