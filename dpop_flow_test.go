package oidcrp

import (
	"crypto"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/gorilla/sessions"
	"github.com/oidcrp/oidcrp/internal/devop"
)

// TestDPoPLoginRefreshAndUserClient: with Config.DPoP the client registers
// for bound tokens, the authorization request names the session's key, the
// token request carries a proof (after the provider's nonce challenge), the
// access token is DPoP-bound and is sent to userinfo with a proof, through
// a refresh too; as a Bearer token it is refused.
func TestDPoPLoginRefreshAndUserClient(t *testing.T) {
	t.Parallel()
	e := newTokensEnv(t, devop.Options{DPoP: true, DPoPNonce: true, IDTokenLifetime: 10 * time.Minute, AccessTokenLifetime: 5 * time.Minute},
		Config{DPoP: true, KeepTokens: true})
	out := e.login("/")

	if cs := e.op.Clients(); len(cs) != 1 || cs[0].Metadata["dpop_bound_access_tokens"] != true {
		t.Fatalf("registered metadata lacks dpop_bound_access_tokens: %+v", cs)
	}
	jkt := e.op.LastAuthorizeRequest().Get("dpop_jkt")
	if len(jkt) != 43 {
		t.Fatalf("authorization request dpop_jkt = %q", jkt)
	}
	st := e.op.Stats()
	// The first token request is challenged, the retry carries the nonce;
	// userinfo then gets the remembered nonce without a challenge.
	if st.DPoPNonceChallenges != 1 || st.Token != 2 || st.DPoPProofs < 2 {
		t.Fatalf("stats after login: %+v\nlogs:\n%s", st, e.logs)
	}
	_, header := e.op.LastTokenRequest()
	if header.Get("DPoP") == "" {
		t.Fatal("the token request carried no DPoP proof")
	}
	k, _ := checkProof(t, header.Get("DPoP"))
	if tp := thumb(t, k); tp != jkt {
		t.Fatalf("token request proof key %q, dpop_jkt %q", tp, jkt)
	}

	res, _ := e.call("")
	allOK(t, res, 1)

	// The bound token alone, as a Bearer token, is refused.
	at, _ := out["access_token"].(string)
	req, _ := http.NewRequest(http.MethodGet, e.op.Issuer()+"/userinfo", nil)
	req.Header.Set("Authorization", "Bearer "+at)
	resp, err := e.opSrv.Client().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if at == "" || resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("bound token %q as Bearer: %d", at, resp.StatusCode)
	}

	// A refresh carries a proof of the same key; the new token stays bound.
	before := e.op.Stats()
	res, _ = e.call("advance=5m&n=3")
	allOK(t, res, 3)
	after := e.op.Stats()
	if after.Token-before.Token != 1 || after.DPoPProofs-before.DPoPProofs != 4 {
		t.Fatalf("refresh: %d token requests, %d proofs; want 1 and 4", after.Token-before.Token, after.DPoPProofs-before.DPoPProofs)
	}
	form, header := e.op.LastTokenRequest()
	if form.Get("grant_type") != "refresh_token" {
		t.Fatalf("last token request %v", form)
	}
	if k, _ := checkProof(t, header.Get("DPoP")); thumb(t, k) != jkt {
		t.Fatal("the refresh proof is made with another key")
	}
}

func thumb(t *testing.T, k jose.JSONWebKey) string {
	t.Helper()
	tp, err := k.Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(tp)
}

// TestDPoPServerSideSessionAndPAR: the key is kept in a server-side
// session; with PAR the pushed request carries dpop_jkt; DPoP is used
// without Config.DPoP when the provider advertises it and the registration
// asks for bound tokens.
func TestDPoPServerSideSessionAndPAR(t *testing.T) {
	t.Parallel()
	store := sessions.NewFilesystemStore(t.TempDir(), []byte("0123456789abcdef0123456789abcdef"))
	e := newTokensEnv(t, devop.Options{DPoP: true, RequirePAR: true, IDTokenLifetime: 10 * time.Minute, AccessTokenLifetime: 5 * time.Minute},
		Config{KeepTokens: true, SessionStore: store, Metadata: ClientMetadata{Extra: map[string]any{"dpop_bound_access_tokens": true}}})
	e.login("/")
	form, _ := e.op.LastPARRequest()
	if form.Get("dpop_jkt") == "" {
		t.Fatalf("pushed request lacks dpop_jkt: %v", form)
	}
	if e.op.LastAuthorizeRequest().Has("dpop_jkt") {
		t.Error("the browser's redirect carries dpop_jkt besides the request_uri")
	}
	res, _ := e.call("advance=5m")
	allOK(t, res, 1)
	res, _ = e.call("")
	allOK(t, res, 1)
	if st := e.op.Stats(); st.DPoPProofs < 5 {
		t.Fatalf("stats %+v", st)
	}
}

// TestDPoPNonceAtResourceServer: a resource server that demands a nonce
// (401, use_dpop_nonce) gets the request again, body and all, once, with
// a proof carrying its nonce and naming the token; later requests carry
// the remembered nonce at once.
func TestDPoPNonceAtResourceServer(t *testing.T) {
	t.Parallel()
	var mu sync.Mutex
	var seen []string // "nonce|body" per request
	rs := newTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		scheme, tok, _ := strings.Cut(r.Header.Get("Authorization"), " ")
		_, c := checkProof(t, r.Header.Get("DPoP"))
		sum := sha256.Sum256([]byte(tok))
		mu.Lock()
		seen = append(seen, c.Nonce+"|"+string(body))
		mu.Unlock()
		switch {
		case scheme != "DPoP" || c.ATH != base64.RawURLEncoding.EncodeToString(sum[:]) || c.HTM != "POST" || c.HTU != "https://"+r.Host+"/api":
			http.Error(w, "bad proof", http.StatusUnauthorized)
		case c.Nonce != "rs-nonce":
			w.Header().Set("DPoP-Nonce", "rs-nonce")
			w.Header().Set("WWW-Authenticate", `DPoP error="use_dpop_nonce", error_description="nonce required"`)
			w.WriteHeader(http.StatusUnauthorized)
		default:
			io.WriteString(w, "ok")
		}
	}))
	t.Cleanup(rs.Close)

	e := newEnv(t, devop.Options{DPoP: true}, Config{DPoP: true, KeepTokens: true})
	mux := http.NewServeMux()
	mux.Handle("/api", e.rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hc, err := UserClient(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp, err := hc.Post(rs.URL+"/api?q=1", "text/plain", strings.NewReader("payload"))
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		w.WriteHeader(resp.StatusCode)
		w.Write(b)
	})))
	mux.Handle("/", e.handler(e.rp))
	e.app.Config.Handler = mux
	e.login("/")

	for i, want := range [][]string{{"|payload", "rs-nonce|payload"}, {"rs-nonce|payload"}} {
		mu.Lock()
		seen = nil
		mu.Unlock()
		resp := e.get(e.app.URL+"/api", "application/json")
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK || string(b) != "ok" {
			t.Fatalf("call %d: %d %s", i, resp.StatusCode, b)
		}
		mu.Lock()
		got, _ := json.Marshal(seen)
		mu.Unlock()
		if w, _ := json.Marshal(want); string(got) != string(w) {
			t.Fatalf("call %d: the resource server saw %s, want %s", i, got, w)
		}
	}
}

func TestCheckDPoP(t *testing.T) {
	t.Parallel()
	d := &discovery{Issuer: "https://op.example", DPoPSigningAlgValuesSupported: []string{"EdDSA"}}
	if err := checkDPoP(&Config{DPoP: true}, d); err == nil || !strings.Contains(err.Error(), "ES256") {
		t.Fatalf("a provider without ES256 proofs: %v", err)
	}
	if err := checkDPoP(&Config{}, d); err != nil {
		t.Fatal(err)
	}
	d.DPoPSigningAlgValuesSupported = []string{"RS256", "ES256"}
	if err := checkDPoP(&Config{DPoP: true}, d); err != nil {
		t.Fatal(err)
	}
}
