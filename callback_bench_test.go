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
	claims := benchClaims()
	claims["iss"], claims["aud"], claims["nonce"] = iss, "bench-client", benchNonce
	claims["iat"], claims["exp"] = time.Now().Unix(), time.Now().Add(time.Hour).Unix()
	payload, _ := json.Marshal(claims)
	jws, err := signer.Sign(payload)
	if err != nil {
		b.Fatal(err)
	}
	idToken, _ := jws.CompactSerialize()
	tokenBody, _ := json.Marshal(map[string]any{"access_token": "at", "token_type": "Bearer", "expires_in": 3600, "id_token": idToken})
	jwks, _ := json.Marshal(jose.JSONWebKeySet{Keys: []jose.JSONWebKey{{Key: &key.PublicKey, KeyID: "k1", Algorithm: "RS256", Use: "sig"}}})
	mux.HandleFunc("/.well-known/openid-configuration", func(w http.ResponseWriter, r *http.Request) {
		json.NewEncoder(w).Encode(map[string]any{
			"issuer": iss, "authorization_endpoint": iss + "/authorize", "token_endpoint": iss + "/token", "jwks_uri": iss + "/jwks",
		})
	})
	mux.HandleFunc("/jwks", func(w http.ResponseWriter, r *http.Request) { w.Write(jwks) })
	mux.HandleFunc("/token", func(w http.ResponseWriter, r *http.Request) {
		op.tokens.Add(1)
		io.Copy(io.Discard, r.Body)
		w.Header().Set("Content-Type", "application/json")
		w.Write(tokenBody)
	})
	return op
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

// callback returns one oidcrp callback against op, with cfg completed as a
// client configured by hand (client_secret_basic unless cfg says otherwise).
func (op *benchOP) callback(b *testing.B, cfg Config) func() {
	iss := op.srv.URL
	cfg.Issuer, cfg.RedirectURL, cfg.ClientID = iss, "https://app.example.com/cb", "bench-client"
	if cfg.ClientSecret == "" && cfg.SigningKey == nil {
		cfg.ClientSecret = "secret"
	}
	cfg.SkipUserInfo, cfg.SessionKeys, cfg.HTTPClient = true, []Secret{Secret(make([]byte, 32))}, op.srv.Client()
	cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	rp, err := New(cfg)
	if err != nil {
		b.Fatal(err)
	}
	s, _ := rp.keys.sealer(context.Background())
	f := newFlow(benchSeed)
	f.issuer, f.client, f.ReturnTo, f.Created = tag("issuer", iss), tag("client", "bench-client"), "/", time.Now().Unix()
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

// BenchmarkCallback compares oidcrp's callback (state check, code exchange,
// ID token verification, nonce, session cookie) with the same parts done by
// hand with securecookie, x/oauth2 and go-oidc, against one in-process token
// endpoint. It reports outgoing requests per callback.
func BenchmarkCallback(b *testing.B) {
	op := newBenchOP(b)
	iss := op.srv.URL

	b.Run("oidcrp", func(b *testing.B) { op.measure(b, op.callback(b, Config{})) })

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
