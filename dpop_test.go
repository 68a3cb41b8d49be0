package oidcrp

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// checkProof verifies a DPoP proof as RFC 9449 §4.3 has a server do, and
// returns its header key and claims.
func checkProof(t *testing.T, proof string) (jose.JSONWebKey, dpopClaims) {
	t.Helper()
	if strings.Count(proof, ".") != 2 {
		t.Fatalf("proof is not a compact JWS: %q", proof)
	}
	jws, err := jose.ParseSignedCompact(proof, []jose.SignatureAlgorithm{jose.ES256})
	if err != nil {
		t.Fatalf("parse proof: %v", err)
	}
	h := jws.Signatures[0].Header
	if h.Algorithm != "ES256" {
		t.Errorf("alg = %q, want ES256", h.Algorithm)
	}
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		t.Errorf("typ = %q, want dpop+jwt", typ)
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() || !h.JSONWebKey.Valid() {
		t.Fatalf("jwk header missing, invalid or not public: %+v", h.JSONWebKey)
	}
	// No private member may travel in the header.
	seg, _ := base64.RawURLEncoding.DecodeString(strings.Split(proof, ".")[0])
	var raw struct {
		JWK map[string]any `json:"jwk"`
	}
	if err := json.Unmarshal(seg, &raw); err != nil {
		t.Fatalf("header: %v", err)
	}
	if _, ok := raw.JWK["d"]; ok {
		t.Fatal("the jwk header carries the private key")
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		t.Fatalf("signature does not verify with the jwk header: %v", err)
	}
	var c dpopClaims
	if err := json.Unmarshal(payload, &c); err != nil {
		t.Fatalf("claims: %v", err)
	}
	return *h.JSONWebKey, c
}

func TestDPoPProof(t *testing.T) {
	t.Parallel()
	k := newDPoPKey()
	now := time.Unix(1_800_000_000, 0)
	p, err := k.proof("POST", "https://op.example/token?x=1#frag", "", "", now)
	if err != nil {
		t.Fatal(err)
	}
	jwk, c := checkProof(t, p)
	if c.HTM != "POST" || c.HTU != "https://op.example/token" || c.IAT != now.Unix() {
		t.Errorf("htm, htu, iat = %q, %q, %d", c.HTM, c.HTU, c.IAT)
	}
	if c.Nonce != "" || c.ATH != "" {
		t.Errorf("nonce %q, ath %q on a token request without nonce", c.Nonce, c.ATH)
	}
	if len(c.JTI) < 16 {
		t.Errorf("jti %q is too short to be unique", c.JTI)
	}
	tp, _ := jwk.Thumbprint(crypto.SHA256)
	jkt, err := k.thumbprint()
	if err != nil || jkt != base64.RawURLEncoding.EncodeToString(tp) {
		t.Errorf("thumbprint %q (%v) is not the proof key's", jkt, err)
	}

	// A resource request with a nonce: ath is the token's SHA-256.
	p2, err := k.proof("GET", "https://rs.example/api/items?page=2", "n-1", "tok.en", now)
	if err != nil {
		t.Fatal(err)
	}
	_, c2 := checkProof(t, p2)
	sum := sha256.Sum256([]byte("tok.en"))
	if c2.ATH != base64.RawURLEncoding.EncodeToString(sum[:]) || c2.Nonce != "n-1" || c2.HTM != "GET" || c2.HTU != "https://rs.example/api/items" {
		t.Errorf("resource proof claims %+v", c2)
	}
	if c2.JTI == c.JTI {
		t.Error("two proofs share a jti")
	}
}

func TestDPoPKeyDerivationAndStorage(t *testing.T) {
	t.Parallel()
	seed := []byte(strings.Repeat("s", 32))
	a, b := dpopKeyFromSeed(seed), dpopKeyFromSeed(seed)
	ja, _ := a.thumbprint()
	jb, _ := b.thumbprint()
	if ja == "" || ja != jb {
		t.Fatalf("the same seed gives keys %q and %q", ja, jb)
	}
	if jc, _ := dpopKeyFromSeed([]byte(strings.Repeat("t", 32))).thumbprint(); jc == ja {
		t.Fatal("different seeds give the same key")
	}
	// A session stores the scalar, and gets the same key back.
	u := &User{Issuer: "https://op.example", Subject: "s", sid: "id", Expiry: time.Now(), accessToken: "at", tokenType: "DPoP", dpop: a}
	nu, err := decodeUser(u.encode())
	if err != nil {
		t.Fatal(err)
	}
	if j, _ := nu.dpop.thumbprint(); j != ja || nu.tokenType != "DPoP" {
		t.Fatalf("decoded session has key %q, token type %q", j, nu.tokenType)
	}
	// A Bearer session stores neither.
	plain := &User{Issuer: "https://op.example", Subject: "s", sid: "id", tokenType: "Bearer"}
	if b := plain.encode(); strings.Contains(string(b), `"dk"`) || strings.Contains(string(b), `"ty"`) {
		t.Fatalf("bearer session stores DPoP fields: %s", b)
	}
	// A malformed stored key fails when a proof is made, not before.
	bad := decodeDPoPKey([]byte{1, 2, 3})
	if _, err := bad.proof("GET", "https://x", "", "", time.Now()); err == nil {
		t.Fatal("a malformed key signed a proof")
	}
}

func BenchmarkDPoPProof(b *testing.B) {
	k := newDPoPKey()
	if _, err := k.thumbprint(); err != nil {
		b.Fatal(err)
	}
	now := time.Now()
	b.ReportAllocs()
	for b.Loop() {
		if _, err := k.proof("GET", "https://rs.example/api/items", "nonce", "access-token", now); err != nil {
			b.Fatal(err)
		}
	}
}

// BenchmarkUserClientDPoP is BenchmarkUserClient's "user" variant with a
// DPoP-bound token: each request carries a fresh proof.
func BenchmarkUserClientDPoP(b *testing.B) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "DPoP the-token" || r.Header.Get("DPoP") == "" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer api.Close()
	rp, err := New(Config{Issuer: "https://op.example", RedirectURL: "https://app.example/cb", KeepTokens: true, DPoP: true})
	if err != nil {
		b.Fatal(err)
	}
	rp.cfg.HTTPClient = &http.Client{Transport: api.Client().Transport}
	u := &User{Issuer: "https://op.example", Subject: "s", sid: "x", Expiry: time.Now().Add(time.Hour),
		accessToken: "the-token", accessExpiry: time.Now().Add(time.Hour), refreshToken: "r", tokensAt: time.Now(),
		tokenType: "DPoP", dpop: newDPoPKey()}
	req := httptest.NewRequest(http.MethodGet, "https://app.example/", nil)
	_, ctx := rp.withTokens(req.Context(), httptest.NewRecorder(), req, rp.track(u))
	hc, err := UserClient(ctx)
	if err != nil {
		b.Fatal(err)
	}
	b.ReportAllocs()
	for b.Loop() {
		resp, err := hc.Get(api.URL)
		if err != nil || resp.StatusCode != http.StatusOK {
			b.Fatal(err, resp)
		}
		_, _ = io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	}
}

// TestDPoPTransportRetries: only a use_dpop_nonce answer is retried, once,
// and only when the body can be sent again; another 400 reaches the caller
// with its body intact.
func TestDPoPTransportRetries(t *testing.T) {
	t.Parallel()
	var hits atomic.Int32
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hits.Add(1)
		_, c := checkProof(t, r.Header.Get("DPoP"))
		w.Header().Set("DPoP-Nonce", "n2")
		w.Header().Set("Content-Type", "application/json")
		switch {
		case r.URL.Path == "/grant":
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"invalid_grant"}`)
		case c.Nonce != "n2":
			w.WriteHeader(http.StatusBadRequest)
			io.WriteString(w, `{"error":"use_dpop_nonce"}`)
		default:
			io.WriteString(w, `{"ok":true}`)
		}
	}))
	defer srv.Close()
	newClient := func() *http.Client {
		return &http.Client{Transport: &dpopTransport{key: newDPoPKey(), base: srv.Client().Transport, nonces: &dpopNonces{}, now: time.Now}}
	}
	do := func(hc *http.Client, path string, body io.Reader) (int, string) {
		t.Helper()
		hits.Store(0)
		req, _ := http.NewRequest(http.MethodPost, srv.URL+path, body)
		resp, err := hc.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	if s, b := do(newClient(), "/token", strings.NewReader("a=b")); s != 200 || hits.Load() != 2 {
		t.Fatalf("challenge: %d %s after %d requests, want 200 after 2", s, b, hits.Load())
	}
	if s, b := do(newClient(), "/grant", strings.NewReader("a=b")); s != 400 || b != `{"error":"invalid_grant"}` || hits.Load() != 1 {
		t.Fatalf("other error: %d %q after %d requests", s, b, hits.Load())
	}
	// A body that cannot be replayed is not sent twice.
	if s, _ := do(newClient(), "/token", io.MultiReader(strings.NewReader("a=b"))); s != 400 || hits.Load() != 1 {
		t.Fatalf("unreplayable body: %d after %d requests", s, hits.Load())
	}
	// The nonce is remembered for the origin: no challenge the second time.
	hc := newClient()
	do(hc, "/token", strings.NewReader("a=b"))
	if s, _ := do(hc, "/token", strings.NewReader("a=b")); s != 200 || hits.Load() != 1 {
		t.Fatalf("remembered nonce: %d after %d requests", s, hits.Load())
	}
}
