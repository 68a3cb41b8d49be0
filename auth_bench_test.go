package oidcrp

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"
)

// BenchmarkCallbackAuth compares oidcrp's callback authenticated with
// private_key_jwt (a fresh ES256 or RS256 assertion per code exchange) with
// the same callback authenticated with client_secret_basic, in one run.
func BenchmarkCallbackAuth(b *testing.B) {
	op := newBenchOP(b)
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rs, _ := rsa.GenerateKey(rand.Reader, 2048)
	pkjwt := ClientMetadata{TokenEndpointAuthMethod: "private_key_jwt"}
	for _, tc := range []struct {
		name string
		cfg  Config
	}{
		{"client_secret_basic", Config{}},
		{"private_key_jwt-ES256", Config{SigningKey: ec, Metadata: pkjwt}},
		{"private_key_jwt-RS256", Config{SigningKey: rs, Metadata: pkjwt}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			rp := newBenchRP(b, op, "bench-client", tc.cfg)
			op.measure(b, benchCallback(b, rp, op.srv.URL, "bench-client"))
		})
	}
}

// BenchmarkClientAuthentication is the cost of authenticating one token
// request: a client assertion signed with the relying party's generated
// ES256 or RS256 key, or an HS256 one made with the secret, against the
// HTTP Basic header of client_secret_basic.
func BenchmarkClientAuthentication(b *testing.B) {
	disc := &discovery{Issuer: "https://op.example", TokenEndpoint: "https://op.example/token"}
	for _, tc := range []struct{ name, method, alg string }{
		{"client_secret_basic", "client_secret_basic", ""},
		{"client_secret_jwt-HS256", "client_secret_jwt", ""},
		{"private_key_jwt-ES256", "private_key_jwt", "ES256"},
		{"private_key_jwt-RS256", "private_key_jwt", "RS256"},
	} {
		b.Run(tc.name, func(b *testing.B) {
			keys := &keyManager{now: time.Now}
			if tc.alg != "" {
				k, err := generateKey(keyKind{"sig", tc.alg}, time.Now())
				if err != nil {
					b.Fatal(err)
				}
				keys.keys = []*rpKey{k}
			}
			c := &client{disc: disc, keys: keys, now: time.Now, creds: &credentials{
				ClientID: "bench-client", ClientSecret: "a-client-secret-of-43-characters-xxxxxxxxxx",
				Metadata: ClientMetadata{TokenEndpointAuthMethod: tc.method, Extra: map[string]any{"token_endpoint_auth_signing_alg": tc.alg}},
			}}
			if tc.alg == "" {
				delete(c.creds.Metadata.Extra, "token_endpoint_auth_signing_alg")
			}
			b.ReportAllocs()
			for b.Loop() {
				form, h := url.Values{"grant_type": {"authorization_code"}}, http.Header{}
				if err := c.authenticate(form, h); err != nil {
					b.Fatal(err)
				}
				if h.Get("Authorization") == "" && !strings.HasPrefix(form.Get("client_assertion"), "ey") {
					b.Fatal("no client authentication")
				}
			}
		})
	}
}
