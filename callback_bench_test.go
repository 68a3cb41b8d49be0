package oidcrp

import (
	"context"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"net/url"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"github.com/gorilla/sessions"
	"golang.org/x/oauth2"
)

// benchOP is a minimal provider for the callback benchmark: discovery, keys,
// and a token endpoint answering every code with one pre-signed ID token.
type benchOP struct {
	srv    *httptest.Server
	tokens atomic.Int64
	signer jose.Signer
	bodies sync.Map // client_id → token response, set by answer; "bench-client" by default
}

// benchSeed is the seed of the login attempt the callback benchmark
// completes; the nonce derived from it is in every ID token the bench
// provider returns.
var (
	benchSeed  = [32]byte{'b', 'e', 'n', 'c', 'h'}
	benchNonce = newFlow(benchSeed).Nonce
)

func newBenchOP(b *testing.B) *benchOP {
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		b.Fatal(err)
	}
	op := &benchOP{}
	mux := http.NewServeMux()
	op.srv = httptest.NewTLSServer(mux)
	b.Cleanup(op.srv.Close)
	iss := op.srv.URL
	signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.RS256, Key: jose.JSONWebKey{Key: key, KeyID: "k1"}}, nil)
	if err != nil {
		b.Fatal(err)
	}
	op.signer = signer
	op.answer("bench-client", op.idToken(b, "bench-client"))
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token", "jwks_uri": iss + "/jwks",
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) { w.Write(jwks) })
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		op.tokens.Add(1)
		id, _, basic := r.BasicAuth()
		if !basic {
			id = r.PostFormValue("client_id")
		}
		io.Copy(io.Discard, r.Body)
		body, ok := op.bodies.Load(id)
		if !ok {
			http.Error(w, `{"error":"invalid_client"}`, http.StatusUnauthorized)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		w.Write(body.([]byte))
	})
	return op
}

// idToken returns an ID token for clientID, signed by the provider's key.
func (op *benchOP) idToken(b *testing.B, clientID string) string {
	claims := benchClaims()
	claims["iss"], claims["aud"], claims["nonce"] = op.srv.URL, clientID, benchNonce
	claims["iat"], claims["exp"] = time.Now().Unix(), time.Now().Add(time.Hour).Unix()
	payload, _ := json.Marshal(claims)
	jws, err := op.signer.Sign(payload)
	if err != nil {
		b.Fatal(err)
	}
	idToken, _ := jws.CompactSerialize()
	return idToken
}

// answer makes the token endpoint answer clientID's requests with idToken.
func (op *benchOP) answer(clientID, idToken string) {
	body, _ := json.Marshal(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "id_token": idToken})
	op.bodies.Store(clientID, body)
}

// measure runs call once to warm discovery and keys, then b.N times, and
// reports the token requests each call made.
func (op *benchOP) measure(b *testing.B, call func()) {
	call()
	before := op.tokens.Load()
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		call()
	}
	b.ReportMetric(float64(op.tokens.Load()-before)/float64(b.N), "requests/op")
}

// BenchmarkCallback compares oidcrp's callback (state check, code exchange,
// ID token verification, nonce, session cookie) with the same parts done by
// hand with securecookie, x/oauth2 and go-oidc, against one in-process token
// endpoint, and oidcrp's callback with an encrypted ID token against the
// plain one. It reports outgoing requests per callback.
func BenchmarkCallback(b *testing.B) {
	op := newBenchOP(b)
	iss := op.srv.URL

	b.Run("oidcrp", func(b *testing.B) {
		rp := newBenchRP(b, op, "bench-client", Config{})
		op.measure(b, benchCallback(b, rp, iss, "bench-client"))
	})

	// The same callback with the ID token signed, then encrypted to the
	// relying party's key (ECDH-ES, A256GCM): the cost of decryption.
	b.Run("oidcrp-encrypted", func(b *testing.B) {
		rp := newBenchRP(b, op, "bench-enc", Config{Metadata: ClientMetadata{Extra: map[string]any{
			"id_token_encrypted_response_alg": "ECDH-ES", "id_token_encrypted_response_enc": "A256GCM",
		}}})
		keys, err := rp.lc.keys.ensure(context.Background(), []keyKind{{"enc", "ECDH-ES"}})
		if err != nil {
			b.Fatal(err)
		}
		enc, err := jose.NewEncrypter(jose.A256GCM, jose.Recipient{Algorithm: jose.ECDH_ES, Key: keys[0].publicKey(), KeyID: keys[0].kid},
			(&jose.EncrypterOptions{}).WithContentType("JWT"))
		if err != nil {
			b.Fatal(err)
		}
		jwe, err := enc.Encrypt([]byte(op.idToken(b, "bench-enc")))
		if err != nil {
			b.Fatal(err)
		}
		raw, _ := jwe.CompactSerialize()
		op.answer("bench-enc", raw)
		op.measure(b, benchCallback(b, rp, iss, "bench-enc"))
	})

	b.Run("by-hand", func(b *testing.B) {
		ctx := oidc.ClientContext(context.Background(), op.srv.Client())
		provider, err := oidc.NewProvider(ctx, iss)
		if err != nil {
			b.Fatal(err)
		}
		verifier := provider.Verifier(&oidc.Config{ClientID: "bench-client"})
		conf := &oauth2.Config{ClientID: "bench-client", ClientSecret: "secret", Endpoint: provider.Endpoint(), RedirectURL: "https://app.example.com/cb"}
		store := sessions.NewCookieStore([]byte("0123456789abcdef0123456789abcdef"), []byte("0123456789abcdef0123456789abcdef"))
		codec := store.Codecs[0]
		state, verifierStr := randomString(), oauth2.GenerateVerifier()
		flowValue, err := codec.Encode("flow", map[any]any{"state": state, "nonce": benchNonce, "verifier": verifierStr})
		if err != nil {
			b.Fatal(err)
		}
		target := "https://app.example.com/cb?" + url.Values{"code": {"c"}, "state": {state}, "iss": {iss}}.Encode()
		call := func() {
			r := httptest.NewRequest(http.MethodGet, target, nil)
			r.AddCookie(&http.Cookie{Name: "flow", Value: flowValue})
			w := httptest.NewRecorder()
			ck, _ := r.Cookie("flow")
			fl := map[any]any{}
			if err := codec.Decode("flow", ck.Value, &fl); err != nil || fl["state"] != r.URL.Query().Get("state") {
				b.Fatal("state", err)
			}
			tok, err := conf.Exchange(ctx, r.URL.Query().Get("code"), oauth2.VerifierOption(fl["verifier"].(string)))
			if err != nil {
				b.Fatal(err)
			}
			idt, err := verifier.Verify(ctx, tok.Extra("id_token").(string))
			if err != nil || idt.Nonce != fl["nonce"] {
				b.Fatal("verify", err)
			}
			claims := map[string]any{}
			if err := idt.Claims(&claims); err != nil {
				b.Fatal(err)
			}
			value, err := codec.Encode("session", map[any]any{"claims": claims})
			if err != nil {
				b.Fatal(err)
			}
			http.SetCookie(w, &http.Cookie{Name: "session", Value: value, Path: "/", HttpOnly: true, Secure: true})
			http.Redirect(w, r, "/", http.StatusSeeOther)
		}
		op.measure(b, call)
	})
}

// newBenchRP is a relying party for the bench provider, configured with
// clientID and metadata.
func newBenchRP(b *testing.B, op *benchOP, clientID string, cfg Config) *RP {
	cfg.Issuer, cfg.RedirectURL, cfg.ClientID = op.srv.URL, "https://app.example.com/cb", clientID
	if cfg.SigningKey == nil {
		cfg.ClientSecret = "secret"
	}
	cfg.SkipUserInfo, cfg.SessionKeys, cfg.HTTPClient = true, []Secret{Secret(make([]byte, 32))}, op.srv.Client()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	rp, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	return rp
}

// benchCallback returns a call of rp's callback completing the login
// attempt of benchSeed, which must succeed.
func benchCallback(b *testing.B, rp *RP, iss, clientID string) func() {
	s, err := rp.keys.sealer(context.Background())
	if err != nil {
		b.Fatal(err)
	}
	f := newFlow(benchSeed)
	f.issuer, f.client, f.ReturnTo, f.Created = tag("issuer", iss), tag("client", clientID), "/", time.Now().Unix()
	state := f.State
	name := rp.loginCookieName(state)
	cookie := &http.Cookie{Name: name, Value: s.seal("login", rp.bind(name), f.encode())}
	target := "https://app.example.com/cb?" + url.Values{"code": {"c"}, "state": {state}, "iss": {iss}}.Encode()
	return func() {
		req := httptest.NewRequest(http.MethodGet, target, nil)
		req.AddCookie(cookie)
		w := httptest.NewRecorder()
		rp.ServeHTTP(w, req)
		if w.Code != http.StatusSeeOther {
			b.Fatalf("callback: %d %s", w.Code, w.Body)
		}
	}
}
