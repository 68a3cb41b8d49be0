package oidcrp

import (
	"context"
	"net/http"
	"net/url"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/oidcrp/oidcrp/internal/devop"
)

// lastIDToken records the ID tokens of a provider's token responses.
type lastIDToken struct {
	mu  sync.Mutex
	raw string
}

func (l *lastIDToken) hook(body map[string]any) {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.raw, _ = body["id_token"].(string)
}

func (l *lastIDToken) get() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.raw
}

// jweHeader returns the protected header of a compact JWE, failing the
// test when raw is not one.
func jweHeader(t *testing.T, raw string) jose.Header {
	t.Helper()
	jwe, err := jose.ParseEncryptedCompact(raw,
		[]jose.KeyAlgorithm{jose.ECDH_ES, jose.RSA_OAEP_256, jose.RSA_OAEP},
		[]jose.ContentEncryption{jose.A256GCM, jose.A128CBC_HS256})
	if err != nil {
		t.Fatalf("not a compact JWE: %v", err)
	}
	return jwe.Header
}

// encryptTo returns a JWE encrypted with ECDH-ES and A256GCM to a fresh
// key named kid.
func encryptTo(t *testing.T, kid string) string {
	t.Helper()
	k, err := generateKey(keyKind{"enc", "ECDH-ES"}, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	e, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES, Key: k.publicKey(), KeyID: kid}, nil)
	if err != nil {
		t.Fatal(err)
	}
	jwe, err := e.Encrypt([]byte("x.y.z"))
	if err != nil {
		t.Fatal(err)
	}
	raw, err := jwe.CompactSerialize()
	if err != nil {
		t.Fatal(err)
	}
	return raw
}

func withFavourite(c map[string]any) { c["favourite"] = "tea" } // a claim only userinfo has

// TestEncryptedResponsesLogin: with Config.EncryptedResponses the relying
// party registers ECDH-ES and A256GCM for ID tokens and userinfo, decrypts
// both, and the claims of each reach the handler; the logout hint is the
// signed ID token inside.
func TestEncryptedResponsesLogin(t *testing.T) {
	t.Parallel()
	var tokens lastIDToken
	e := newEnv(t, devop.Options{TokenResponse: tokens.hook, UserInfo: withFavourite}, Config{EncryptedResponses: true})
	out := e.login("/")
	claims, _ := out["claims"].(map[string]any)
	if out["sub"] != "demo-user" || claims["name"] != "Demo User" || claims["favourite"] != "tea" {
		t.Fatalf("claims reaching the handler: %v", out)
	}
	md := e.op.Clients()[0].Metadata
	for _, what := range []string{"id_token", "userinfo"} {
		if md[what+"_encrypted_response_alg"] != "ECDH-ES" || md[what+"_encrypted_response_enc"] != "A256GCM" {
			t.Errorf("registered %s encryption: %v %v", what, md[what+"_encrypted_response_alg"], md[what+"_encrypted_response_enc"])
		}
	}
	if h := jweHeader(t, tokens.get()); h.Algorithm != "ECDH-ES" || h.ExtraHeaders["enc"] != "A256GCM" {
		t.Errorf("ID token JWE header: %+v", h)
	}
	if n := e.op.Stats().UserInfo; n != 1 {
		t.Errorf("%d userinfo requests", n)
	}
	loc, err := url.Parse(e.postLogout().Header.Get("Location"))
	if err != nil || strings.Count(loc.Query().Get("id_token_hint"), ".") != 2 {
		t.Errorf("logout redirect %v: id_token_hint is not the signed ID token", loc)
	}
}

// TestEncryptedIDTokenRSA: a provider that encrypts with RSA only gets
// RSA-OAEP-256 with A128CBC-HS256; one that does not encrypt userinfo
// sends it plain, which is then accepted.
func TestEncryptedIDTokenRSA(t *testing.T) {
	t.Parallel()
	var tokens lastIDToken
	e := newEnv(t, devop.Options{TokenResponse: tokens.hook, UserInfo: withFavourite, Discovery: func(doc map[string]any) {
		doc["id_token_encryption_alg_values_supported"] = []string{"RSA-OAEP", "RSA-OAEP-256", "A128KW"}
		doc["id_token_encryption_enc_values_supported"] = []string{"A128CBC-HS256"}
		delete(doc, "userinfo_encryption_alg_values_supported")
	}}, Config{EncryptedResponses: true})
	out := e.login("/")
	if claims, _ := out["claims"].(map[string]any); claims["favourite"] != "tea" {
		t.Fatalf("claims reaching the handler: %v", out)
	}
	md := e.op.Clients()[0].Metadata
	if md["id_token_encrypted_response_alg"] != "RSA-OAEP-256" || md["id_token_encrypted_response_enc"] != "A128CBC-HS256" || md["userinfo_encrypted_response_alg"] != nil {
		t.Errorf("registered encryption: %v", md)
	}
	if h := jweHeader(t, tokens.get()); h.Algorithm != "RSA-OAEP-256" {
		t.Errorf("ID token JWE header: %+v", h)
	}
}

// TestSignedUserInfo: a registration with userinfo_signed_response_alg
// gets userinfo as a signed JWT, verified with the provider's keys; one
// naming another issuer or audience, or plain JSON, is refused.
func TestSignedUserInfo(t *testing.T) {
	t.Parallel()
	cfg := Config{Metadata: ClientMetadata{UserinfoSignedResponseAlg: "RS256"}}
	e := newEnv(t, devop.Options{UserInfo: withFavourite}, cfg)
	if claims, _ := e.login("/")["claims"].(map[string]any); claims["favourite"] != "tea" {
		t.Fatalf("claims reaching the handler: %v", claims)
	}
	for name, opts := range map[string]devop.Options{
		"plain JSON":     {PlainResponses: true},
		"other issuer":   {UserInfo: func(c map[string]any) { c["iss"] = "https://evil.example" }},
		"other audience": {UserInfo: func(c map[string]any) { c["aud"] = "someone-else" }},
		"other subject":  {UserInfo: func(c map[string]any) { c["sub"] = "foobar" }},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, opts, cfg)
			if status, body := e.attempt("/"); status != http.StatusBadGateway || !strings.Contains(body, string(ReasonUserInfo)) {
				t.Errorf("ended with %d %s, want 502 with reason %s", status, body, ReasonUserInfo)
			}
			if e.cookie("oidcrp") != nil || e.handled.Load() != 0 {
				t.Error("the login went through")
			}
		})
	}
}

// TestEncryptedIDTokenRefresh: a refreshed ID token is decrypted too; one
// that does not decrypt ends the session.
func TestEncryptedIDTokenRefresh(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	garbage := false
	var tokens lastIDToken
	e := newEnv(t, devop.Options{AccessTokenLifetime: 5 * time.Minute, IDTokenLifetime: 10 * time.Minute, TokenResponse: func(body map[string]any) {
		tokens.hook(body)
		mu.Lock()
		defer mu.Unlock()
		if garbage {
			body["id_token"] = "eyJhbGciOiJFQ0RILUVTIn0.a.b.c.d"
		}
	}}, Config{EncryptedResponses: true, KeepTokens: true})
	e.login("/")
	e.clock.Advance(5 * time.Minute)
	if status, out, _ := e.apiGet("/api"); status != http.StatusOK || out["sub"] != "demo-user" {
		t.Fatalf("after a refresh with an encrypted ID token: %d %v", status, out)
	}
	if form, _ := e.op.LastTokenRequest(); form.Get("grant_type") != "refresh_token" {
		t.Fatalf("no refresh: %v", form)
	}
	jweHeader(t, tokens.get())
	e.clock.Advance(5 * time.Minute)
	mu.Lock()
	garbage = true
	mu.Unlock()
	if status, _, _ := e.apiGet("/api"); status != http.StatusUnauthorized {
		t.Errorf("after a refresh with an undecryptable ID token: %d, want 401", status)
	}
	if !strings.Contains(e.logs.String(), "not a JWE encrypted with ECDH-ES") {
		t.Errorf("the logs do not say why:\n%s", e.logs)
	}
}

// TestHostileEncryptedResponses: ID tokens encrypted to another key, with
// another alg or enc than registered, sent plain despite the registration,
// encrypted without one, unsigned inside, or garbage, are refused with a
// reason; so is userinfo encrypted to another key.
func TestHostileEncryptedResponses(t *testing.T) {
	t.Parallel()
	rsaOnly := func(doc map[string]any) {
		doc["id_token_encryption_alg_values_supported"] = []string{"RSA-OAEP-256", "RSA-OAEP"}
	}
	enc := Config{EncryptedResponses: true}
	stranger := encryptTo(t, "nobody") // to a key the relying party does not have
	userinfoOnly := Config{Metadata: ClientMetadata{Extra: map[string]any{"userinfo_encrypted_response_alg": "ECDH-ES"}}}
	cases := []struct {
		name   string
		opts   devop.Options
		cfg    Config
		status int
		reason Reason
		msg    string
	}{
		{"foreign key", devop.Options{EncryptToForeignKey: true}, enc, 400, ReasonInvalidIDToken, "decryption failed"},
		{"other alg", devop.Options{Discovery: rsaOnly, EncryptionAlg: "RSA-OAEP"}, enc, 400, ReasonInvalidIDToken, "not a JWE encrypted with RSA-OAEP-256 and A256GCM"},
		{"other enc", devop.Options{EncryptionEnc: "A128CBC-HS256"}, enc, 400, ReasonInvalidIDToken, "not a JWE encrypted with ECDH-ES and A256GCM"},
		{"plain despite registration", devop.Options{PlainResponses: true}, enc, 400, ReasonInvalidIDToken, "ID token is not encrypted"},
		{"encrypted without registration", devop.Options{TokenResponse: func(b map[string]any) { b["id_token"] = "eyJhbGciOiJFQ0RILUVTIn0.a.b.c.d" }}, Config{}, 400, ReasonInvalidIDToken, "ID token is encrypted, but"},
		{"unsigned inside", devop.Options{IDToken: func(c, h map[string]any) { h["alg"] = "none" }}, enc, 400, ReasonInvalidIDToken, "invalid_id_token"},
		{"garbage", devop.Options{TokenResponse: func(b map[string]any) { b["id_token"] = "x.\x00.%%.y.z" }}, enc, 400, ReasonInvalidIDToken, "not a JWE"},
		{"unknown kid", devop.Options{TokenResponse: func(b map[string]any) { b["id_token"] = stranger }}, enc, 400, ReasonInvalidIDToken, "which is not one of the relying party's ECDH-ES keys"},
		{"userinfo to a foreign key", devop.Options{EncryptToForeignKey: true}, userinfoOnly, 502, ReasonUserInfo, "decryption failed"},
		{"userinfo plain", devop.Options{PlainResponses: true}, userinfoOnly, 502, ReasonUserInfo, "not application/jwt"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts, tc.cfg)
			if status, body := e.attempt("/"); status != tc.status || !strings.Contains(body, string(tc.reason)) {
				t.Errorf("ended with %d %s, want %d with reason %s", status, body, tc.status, tc.reason)
			}
			if e.cookie("oidcrp") != nil || e.handled.Load() != 0 {
				t.Error("the login went through")
			}
			if s := e.op.Stats(); tc.reason == ReasonInvalidIDToken && s.UserInfo != 0 {
				t.Errorf("userinfo was called after a refused ID token: %+v", s)
			}
			if logs := e.logs.String(); !strings.Contains(logs, "reason="+string(tc.reason)) || !strings.Contains(logs, tc.msg) {
				t.Errorf("no log line with reason=%s saying %q:\n%s", tc.reason, tc.msg, logs)
			}
		})
	}
}

// TestEncryptedResponsesUnsupportedProvider: a provider that encrypts ID
// tokens with none of the relying party's algorithms fails the setup of
// Config.EncryptedResponses, and says so.
func TestEncryptedResponsesUnsupportedProvider(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{Discovery: func(doc map[string]any) {
		doc["id_token_encryption_alg_values_supported"] = []string{"A128KW", "dir"}
	}}, Config{EncryptedResponses: true})
	err := e.rp.Ready(context.Background())
	if err == nil || !strings.Contains(err.Error(), "Config.EncryptedResponses is set but provider") {
		t.Fatalf("Ready: %v", err)
	}
	if n := len(e.op.Clients()); n != 0 {
		t.Errorf("%d clients registered", n)
	}
}

// TestEncryptedResponsesAfterKeyRotation: after RotateKeys the registered
// jwks holds the new encryption key and the retired one, and a token
// encrypted to the retired one still decrypts.
func TestEncryptedResponsesAfterKeyRotation(t *testing.T) {
	t.Parallel()
	var tokens lastIDToken
	e := newEnv(t, devop.Options{EncryptToLastKey: true, TokenResponse: tokens.hook}, Config{EncryptedResponses: true})
	ctx := context.Background()
	if err := e.rp.Ready(ctx); err != nil {
		t.Fatal(err)
	}
	before := e.rp.lc.keys.decryptionKeys()
	if len(before) != 1 {
		t.Fatalf("%d encryption keys before rotation", len(before))
	}
	if err := e.rp.RotateKeys(ctx); err != nil {
		t.Fatal(err)
	}
	if n := e.op.Stats().RegistrationUpdate; n == 0 {
		t.Fatal("the new keys were not registered")
	}
	keys := e.rp.lc.keys.decryptionKeys()
	if len(keys) != 2 || keys[1].kid != before[0].kid || keys[1].retired.IsZero() {
		t.Fatalf("encryption keys after rotation: %v, want a new one and the retired %v", keys, before[0])
	}
	if claims, _ := e.login("/")["claims"].(map[string]any); claims["name"] != "Demo User" {
		t.Fatalf("claims: %v", claims)
	}
	if kid := jweHeader(t, tokens.get()).KeyID; kid != before[0].kid {
		t.Errorf("the ID token was encrypted to %q, want the retired key %q", kid, before[0].kid)
	}
}
