package interop_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"maps"
	"net/http"
	"net/http/httptest"
	"net/url"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/internal/interop"
)

// ---------------------------------------------------------------------------
// Clients without secrets: the RP registers with private_key_jwt, the
// default where the provider takes it, and authenticates with its own key,
// which it rotates through RFC 7592 and uses to decrypt encrypted responses.

// storedKey is one key of the RP's key record (StoreKey+"#keys").
type storedKey struct {
	JWK     map[string]any `json:"jwk"`
	Created int64          `json:"created"`
	Retired int64          `json:"retired"`
}

// storedKeys returns the RP's keys from its store, newest first.
func storedKeys(t *testing.T, store oidcrp.CredentialStore) []storedKey {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	raw, err := store.Load(ctx, "oidcrp:client#keys")
	if err != nil {
		t.Fatalf("loading the RP's keys: %v", err)
	}
	var rec struct {
		Keys []storedKey `json:"keys"`
	}
	if err := json.Unmarshal(raw, &rec); err != nil {
		t.Fatalf("the RP's key record is not JSON: %v", err)
	}
	return rec.Keys
}

// keyOf returns the kid of the newest stored key with the use, or "".
func keyOf(keys []storedKey, use string) string {
	for _, k := range keys {
		if k.JWK["use"] == use && k.Retired == 0 {
			return str(k.JWK, "kid")
		}
	}
	return ""
}

// registeredKids returns the kids of the jwks of a registration request or
// response body.
func registeredKids(t *testing.T, body string) []string {
	t.Helper()
	var m struct {
		JWKS struct {
			Keys []map[string]any `json:"keys"`
		} `json:"jwks"`
	}
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		t.Fatalf("registration body %.200q: %v", body, err)
	}
	var out []string
	for _, k := range m.JWKS.Keys {
		if _, private := k["d"]; private {
			t.Errorf("a registration carries a private key part: kid %v", k["kid"])
		}
		out = append(out, str(k, "kid"))
	}
	return out
}

// assertionKid returns the kid of the client assertion of a token request,
// checking that it is an RFC 7523 assertion of the client.
func assertionKid(t *testing.T, c providerCall, clientID string) string {
	t.Helper()
	f := c.form()
	if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || f.Has("client_secret") || c.header.Get("Authorization") != "" {
		t.Errorf("%s %s: client authentication is not a client assertion alone", c.method, c.url)
		return ""
	}
	claims := jwtPart(t, f.Get("client_assertion"), 1)
	if claims["iss"] != clientID || claims["sub"] != clientID || claims["jti"] == nil || claims["exp"] == nil {
		t.Errorf("client assertion claims %v, want iss and sub %s, jti and exp", claims, clientID)
	}
	return str(jwtPart(t, f.Get("client_assertion"), 0), "kid")
}

// TestRPPrivateKeyJWT: at oidc-provider, which takes private_key_jwt, the
// RP registers with it by default, stores no client secret, keeps its key
// in the key record and signs the token request's client assertion with
// it; the provider verifies that assertion with the registered key.
func TestRPPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{})
	a := newApp(t, op, func(c *oidcrp.Config) { c.Scopes = []string{"profile", "email"} })
	if !slices.Contains(a.disc["token_endpoint_auth_methods_supported"].([]any), any("private_key_jwt")) {
		t.Fatalf("the provider does not advertise private_key_jwt: %v", a.disc["token_endpoint_auth_methods_supported"])
	}
	p := newBrowser(t).navigate(a.URL + "/me")
	v := a.expectSignedIn(p, "/me")
	if v.Claims["email"] != interop.TestUserEmail {
		t.Errorf("claims %v lack the userinfo email", v.Claims)
	}
	st := a.rp.Status()
	if st.AuthMethod != "private_key_jwt" || st.KeyError != "" {
		t.Errorf("Status().AuthMethod %q, KeyError %q; want private_key_jwt and no error", st.AuthMethod, st.KeyError)
	}

	// The registration: private_key_jwt, ES256, the public key inline.
	regs := a.registrations()
	if len(regs) != 1 || regs[0].status != http.StatusCreated {
		t.Fatalf("%d registrations, want 1 answered 201", len(regs))
	}
	var reg map[string]any
	_ = json.Unmarshal([]byte(regs[0].body), &reg)
	if reg["token_endpoint_auth_method"] != "private_key_jwt" || reg["token_endpoint_auth_signing_alg"] != "ES256" {
		t.Errorf("registration asked for %v signed with %v, want private_key_jwt with ES256", reg["token_endpoint_auth_method"], reg["token_endpoint_auth_signing_alg"])
	}
	var resp map[string]any
	_ = json.Unmarshal([]byte(regs[0].respBody), &resp)
	if _, ok := resp["client_secret"]; ok {
		t.Errorf("the provider issued a client secret to a private_key_jwt client")
	}

	// The store: no secret; the key record holds the private key registered.
	creds := a.stored()
	if _, ok := creds["client_secret"]; ok || storedAuthMethod(creds) != "private_key_jwt" {
		t.Errorf("stored credentials hold keys %v with method %q, want no client_secret and private_key_jwt", slices.Sorted(maps.Keys(creds)), storedAuthMethod(creds))
	}
	keys := storedKeys(t, a.store)
	kid := keyOf(keys, "sig")
	if len(keys) != 1 || kid == "" || keys[0].JWK["d"] == nil || keys[0].JWK["alg"] != "ES256" {
		t.Fatalf("stored keys %d (first kid %q, alg %v, private part %v), want one ES256 signing key with its private part", len(keys), kid, keys[0].JWK["alg"], keys[0].JWK["d"] != nil)
	}
	if got := registeredKids(t, regs[0].body); !slices.Equal(got, []string{kid}) {
		t.Errorf("registered kids %v, want the stored key %s", got, kid)
	}

	// The token request: an assertion signed with that key, aimed at the
	// token endpoint, and verified by the provider.
	ex := a.codeExchanges()
	if len(ex) != 1 || ex[0].status != http.StatusOK {
		t.Fatalf("%d code exchanges, want 1 accepted", len(ex))
	}
	if k := assertionKid(t, ex[0], st.ClientID); k != kid {
		t.Errorf("assertion kid %q, want %q", k, kid)
	}
	if aud := jwtPart(t, ex[0].form().Get("client_assertion"), 1)["aud"]; aud != a.endpoint("token_endpoint") {
		t.Errorf("assertion aud %v, want the token endpoint", aud)
	}
	want := fmt.Sprintf("client_assertion: route=token client=%s alg=ES256 kid=%s", st.ClientID, kid)
	if logs := op.LogsWith(want, 1); !strings.Contains(logs, want) {
		t.Errorf("the provider did not log %q:\n%s", want, logs)
	}
}

// TestRPKeyRotationMidSession: RotateKeys while a user is signed in
// publishes the new key with an RFC 7592 PUT (the old one stays
// registered), keeps the session, and signs the next refresh and the next
// login's token request with the new key, which the provider accepts.
func TestRPKeyRotationMidSession(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{AccessTokenTTL: 3 * time.Second, IDTokenTTL: 3 * time.Second})
	a := newApp(t, op, func(c *oidcrp.Config) { c.KeepTokens = true })
	b := newBrowser(t)
	a.expectSignedIn(b.navigate(a.URL+"/a"), "/a")
	clientID := a.rp.Status().ClientID
	oldKid := keyOf(storedKeys(t, a.store), "sig")
	regURI := str(a.stored(), "registration_client_uri")
	if a.rp.Status().AuthMethod != "private_key_jwt" || oldKid == "" || regURI == "" {
		t.Fatalf("after login: method %q, key %q, registration URI %q", a.rp.Status().AuthMethod, oldKid, regURI)
	}

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := a.rp.RotateKeys(ctx); err != nil {
		t.Fatalf("RotateKeys: %v", err)
	}
	newKid := keyOf(storedKeys(t, a.store), "sig")
	if newKid == "" || newKid == oldKid {
		t.Fatalf("signing key %q after rotation, was %q", newKid, oldKid)
	}
	if st := a.rp.Status(); st.ClientID != clientID || st.KeyError != "" {
		t.Errorf("after rotation: client %q (was %q), KeyError %q", st.ClientID, clientID, st.KeyError)
	}
	// The PUT carried both keys, newest first, and the provider saved them.
	puts := a.rec.find(http.MethodPut, regURI)
	if len(puts) != 1 || puts[0].status != http.StatusOK {
		t.Fatalf("%d RFC 7592 PUTs to %s, want 1 answered 200", len(puts), regURI)
	}
	if got := registeredKids(t, puts[0].body); !slices.Equal(got, []string{newKid, oldKid}) {
		t.Errorf("PUT jwks kids %v, want [%s %s]", got, newKid, oldKid)
	}
	if got := registeredKids(t, puts[0].respBody); !slices.Equal(got, []string{newKid, oldKid}) {
		t.Errorf("the provider registered kids %v, want [%s %s]", got, newKid, oldKid)
	}
	if want := fmt.Sprintf("client_saved: route=client_update client=%s auth=private_key_jwt kids=%s,%s", clientID, newKid, oldKid); !strings.Contains(op.LogsWith(want, 1), want) {
		t.Errorf("the provider did not log %q:\n%s", want, op.Logs())
	}
	if n := len(a.registrations()); n != 1 {
		t.Errorf("%d registrations, want 1 (rotation updates the registration in place)", n)
	}

	// The session survives; once its tokens expire, the refresh is
	// authenticated with the new key.
	if api := b.api(a.URL + "/api"); api.status != http.StatusOK {
		t.Fatalf("API request right after rotation: status %d", api.status)
	}
	exp, _ := jwtPart(t, a.lastIDToken(), 1)["exp"].(float64)
	sleepUntil(t, time.Unix(int64(exp), 0).Add(200*time.Millisecond), "until the ID token and access token expire")
	if api := b.api(a.URL + "/api"); api.status != http.StatusOK || !strings.Contains(api.body, `"sub":"`+interop.TestUserSub+`"`) {
		t.Fatalf("API request after expiry: status %d %.200s", api.status, api.body)
	}
	refreshes := a.refreshes()
	if len(refreshes) != 1 || refreshes[0].status != http.StatusOK {
		t.Fatalf("%d refreshes (%v), want 1 accepted", len(refreshes), refreshes)
	}
	if k := assertionKid(t, refreshes[0], clientID); k != newKid {
		t.Errorf("refresh assertion kid %q, want the new key %q", k, newKid)
	}

	// A new login: its code exchange is signed with the new key too.
	a.expectSignedIn(newBrowser(t).navigate(a.URL+"/b"), "/b")
	ex := a.codeExchanges()
	if len(ex) != 2 || ex[1].status != http.StatusOK {
		t.Fatalf("%d code exchanges, want 2 accepted", len(ex))
	}
	if k := assertionKid(t, ex[1], clientID); k != newKid {
		t.Errorf("new login's assertion kid %q, want the new key %q", k, newKid)
	}
	verified := fmt.Sprintf("client_assertion: route=token client=%s alg=ES256 kid=%s", clientID, newKid)
	logs := op.LogsWith(verified, 2)
	if n := strings.Count(logs, verified); n != 2 {
		t.Errorf("the provider verified %d assertions with the new key, want 2 (refresh, login):\n%s", n, logs)
	}
	if strings.Contains(logs, "grant.error") {
		t.Errorf("the provider refused a token request:\n%s", logs)
	}
}

// TestRPEncryptedResponses: with Config.EncryptedResponses, the RP
// registers an encryption key and asks for encrypted ID tokens and
// userinfo; oidc-provider sends both as JWEs to that key, and the login
// completes with the claims of both.
func TestRPEncryptedResponses(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{Encryption: true})
	a := newApp(t, op, func(c *oidcrp.Config) {
		c.EncryptedResponses = true
		c.Scopes = []string{"profile", "email", "groups"}
	})
	p := newBrowser(t).navigate(a.URL + "/enc")

	// What was asked for and sent, whether or not the login succeeded.
	regs := a.registrations()
	if len(regs) != 1 || regs[0].status != http.StatusCreated {
		t.Fatalf("%d registrations, want 1 answered 201", len(regs))
	}
	var reg map[string]any
	_ = json.Unmarshal([]byte(regs[0].body), &reg)
	for _, r := range []string{"id_token", "userinfo"} {
		if reg[r+"_encrypted_response_alg"] != "ECDH-ES" || reg[r+"_encrypted_response_enc"] != "A256GCM" {
			t.Errorf("registration asked %v/%v for %s, want ECDH-ES/A256GCM", reg[r+"_encrypted_response_alg"], reg[r+"_encrypted_response_enc"], r)
		}
	}
	if reg["userinfo_signed_response_alg"] != "RS256" {
		t.Errorf("registration asked userinfo signed with %v, want RS256 (oidc-provider requires a signature with encryption)", reg["userinfo_signed_response_alg"])
	}
	keys := storedKeys(t, a.store)
	encKid := keyOf(keys, "enc")
	var storedKids []string
	for _, k := range keys {
		storedKids = append(storedKids, str(k.JWK, "kid"))
	}
	// One encryption key for both, and the signing key of private_key_jwt.
	if encKid == "" || len(keys) != 2 || keyOf(keys, "sig") == "" || !slices.Equal(registeredKids(t, regs[0].body), storedKids) {
		t.Fatalf("stored keys %v (encryption key %q), registered kids %v; want one encryption and one signing key, both registered", storedKids, encKid, registeredKids(t, regs[0].body))
	}
	jwe := func(what, token string) {
		t.Helper()
		parts := strings.Split(token, ".")
		if len(parts) != 5 {
			t.Errorf("%s has %d parts, want a compact JWE (5)", what, len(parts))
			return
		}
		h := jwtPart(t, strings.Join(parts[:3], "."), 0)
		if h["alg"] != "ECDH-ES" || h["enc"] != "A256GCM" || h["kid"] != encKid {
			t.Errorf("%s JWE header %v, want ECDH-ES, A256GCM, kid %s", what, h, encKid)
		}
	}
	ex := a.codeExchanges()
	if len(ex) != 1 || ex[0].status != http.StatusOK {
		t.Fatalf("%d code exchanges, want 1 accepted", len(ex))
	}
	var tok map[string]any
	_ = json.Unmarshal([]byte(ex[0].respBody), &tok)
	jwe("the ID token", str(tok, "id_token"))
	if ui := a.rec.find(http.MethodGet, a.endpoint("userinfo_endpoint")); len(ui) == 1 && ui[0].status == http.StatusOK {
		jwe("the userinfo response", strings.TrimSpace(ui[0].respBody))
	}

	// The login itself: the claims of the decrypted ID token and userinfo.
	v := a.expectSignedIn(p, "/enc")
	if v.Claims["name"] != interop.TestUserName || v.Claims["email"] != interop.TestUserEmail || v.Claims["nonce"] == nil {
		t.Errorf("claims %v, want the ID token's and the userinfo's", v.Claims)
	}
	if ui := a.rec.find(http.MethodGet, a.endpoint("userinfo_endpoint")); len(ui) != 1 || ui[0].status != http.StatusOK {
		t.Errorf("%d userinfo requests, want 1 accepted", len(ui))
	}
}

// ---------------------------------------------------------------------------
// The lifecycle of a key-based client shared by replicas.

// TestRPKeyClientSharedStore: two RPs sharing a store start at once and
// make exactly one registration and one key; Decommission deletes the
// client, and the provider then refuses an assertion signed with its key.
func TestRPKeyClientSharedStore(t *testing.T) {
	t.Parallel()
	stores := map[string]func(t *testing.T) oidcrp.CredentialStore{
		"MemoryStore": func(*testing.T) oidcrp.CredentialStore { return new(oidcrp.MemoryStore) },
		"FileStore": func(t *testing.T) oidcrp.CredentialStore {
			return oidcrp.NewFileStore(filepath.Join(t.TempDir(), "store"))
		},
	}
	for name, newStore := range stores {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			op := interop.Start(t, interop.Options{})
			disc := discover(t, op)
			store := newStore(t)
			srv := httptest.NewUnstartedServer(nil)
			appURL := "http://" + srv.Listener.Addr().String()
			logs := &lockedBuffer{}
			rec := &recorder{base: http.DefaultTransport.(*http.Transport).Clone()}
			replicas := make([]*oidcrp.RP, 2)
			for i := range replicas {
				rp, err := oidcrp.New(oidcrp.Config{
					Issuer: op.Issuer, RedirectURL: appURL + callbackPath, Store: store,
					Logger:     slog.New(slog.NewTextHandler(logs, &slog.HandlerOptions{Level: slog.LevelDebug})).With("replica", i),
					HTTPClient: &http.Client{Timeout: 10 * time.Second, Transport: rec},
				})
				if err != nil {
					t.Fatal(err)
				}
				replicas[i] = rp
			}
			var next int
			var mu sync.Mutex
			ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { _, _ = w.Write([]byte("ok")) })
			handlers := []http.Handler{replicas[0].Require(ok), replicas[1].Require(ok)}
			srv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				mu.Lock() // round robin
				h := handlers[next%2]
				next++
				mu.Unlock()
				h.ServeHTTP(w, r)
			})
			srv.Start()
			t.Cleanup(func() {
				srv.Close()
				rec.base.CloseIdleConnections()
				if t.Failed() {
					t.Logf("replicas' log:\n%s\nrequests to the provider:\n%s", logs, rec.summary())
				}
			})

			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			errs := make([]error, 2)
			var wg sync.WaitGroup
			for i, rp := range replicas {
				wg.Go(func() { errs[i] = rp.Ready(ctx) })
			}
			wg.Wait()
			if err := errors.Join(errs...); err != nil {
				t.Fatalf("Ready: %v", err)
			}
			regs := rec.find(http.MethodPost, str(disc, "registration_endpoint"))
			clientID := replicas[0].Status().ClientID
			if len(regs) != 1 || clientID == "" || replicas[1].Status().ClientID != clientID {
				t.Fatalf("%d registrations, clients %q and %q; want one client shared", len(regs), clientID, replicas[1].Status().ClientID)
			}
			for i, rp := range replicas {
				if m := rp.Status().AuthMethod; m != "private_key_jwt" {
					t.Errorf("replica %d authenticates with %q, want private_key_jwt", i, m)
				}
			}
			keys := storedKeys(t, store)
			kid := keyOf(keys, "sig")
			if len(keys) != 1 || !slices.Equal(registeredKids(t, regs[0].body), []string{kid}) {
				t.Fatalf("%d stored keys (newest %q), registered %v; want the one stored key registered", len(keys), kid, registeredKids(t, regs[0].body))
			}
			// Both replicas sign in users with that key (the login starts on
			// one replica and completes on the other).
			for range 2 {
				if p := newBrowser(t).navigate(appURL + "/"); p.status != http.StatusOK || p.body != "ok" {
					t.Fatalf("login: status %d at %s", p.status, p.url)
				}
			}
			tokenEP := str(disc, "token_endpoint")
			for _, c := range rec.find(http.MethodPost, tokenEP) {
				if c.status != http.StatusOK || assertionKid(t, c, clientID) != kid {
					t.Errorf("token request answered %d, assertion kid %q; want 200 and %q", c.status, assertionKid(t, c, clientID), kid)
				}
			}
			// The key works at the provider before the decommission, not after.
			priv := ecKey(t, keys[0].JWK)
			if status, code := assertionProbe(t, tokenEP, clientID, kid, priv); code != "invalid_grant" {
				t.Fatalf("probe with the client's key before decommission: %d %q, want invalid_grant (client accepted)", status, code)
			}
			regURI := str(func() map[string]any {
				raw, err := store.Load(ctx, "oidcrp:client")
				if err != nil {
					t.Fatal(err)
				}
				var m map[string]any
				_ = json.Unmarshal(raw, &m)
				return m
			}(), "registration_client_uri")
			if err := replicas[1].Decommission(ctx); err != nil {
				t.Fatalf("Decommission: %v", err)
			}
			if dels := rec.find(http.MethodDelete, regURI); len(dels) != 1 || dels[0].status != http.StatusNoContent {
				t.Fatalf("RFC 7592 DELETE to %s: %d calls", regURI, len(dels))
			}
			if _, err := store.Load(ctx, "oidcrp:client"); !errors.Is(err, oidcrp.ErrNotFound) {
				t.Errorf("credentials still stored after Decommission: %v", err)
			}
			if status, code := assertionProbe(t, tokenEP, clientID, kid, priv); status != http.StatusUnauthorized || code != "invalid_client" {
				t.Errorf("probe with the decommissioned client's key: %d %q, want 401 invalid_client", status, code)
			}
		})
	}
}

// ecKey returns the P-256 private key of a JWK.
func ecKey(t *testing.T, jwk map[string]any) *ecdsa.PrivateKey {
	t.Helper()
	d, err := base64.RawURLEncoding.DecodeString(str(jwk, "d"))
	if jwk["kty"] != "EC" || jwk["crv"] != "P-256" || err != nil {
		t.Fatalf("stored key %v/%v is not a P-256 private key (%v)", jwk["kty"], jwk["crv"], err)
	}
	k, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), d)
	if err != nil {
		t.Fatalf("stored key: %v", err)
	}
	return k
}

// assertionProbe sends a token request with a made-up code, authenticated
// with a client assertion that the test signs with priv (ES256); it returns
// the status and "error" member. invalid_grant means the provider accepted
// the client.
func assertionProbe(t *testing.T, tokenEndpoint, clientID, kid string, priv *ecdsa.PrivateKey) (int, string) {
	t.Helper()
	enc := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}
	now := time.Now().Unix()
	jti := make([]byte, 16)
	_, _ = rand.Read(jti)
	input := enc(map[string]any{"alg": "ES256", "kid": kid, "typ": "JWT"}) + "." +
		enc(map[string]any{"iss": clientID, "sub": clientID, "aud": tokenEndpoint, "jti": base64.RawURLEncoding.EncodeToString(jti), "iat": now, "exp": now + 60})
	sum := sha256.Sum256([]byte(input))
	r, s, err := ecdsa.Sign(rand.Reader, priv, sum[:])
	if err != nil {
		t.Fatal(err)
	}
	sig := make([]byte, 64)
	r.FillBytes(sig[:32])
	s.FillBytes(sig[32:])
	form := url.Values{
		"grant_type": {"authorization_code"}, "code": {"made-up"}, "redirect_uri": {"http://127.0.0.1/cb"},
		"code_verifier": {strings.Repeat("a", 43)}, "client_id": {clientID},
		"client_assertion_type": {"urn:ietf:params:oauth:client-assertion-type:jwt-bearer"},
		"client_assertion":      {input + "." + base64.RawURLEncoding.EncodeToString(sig)},
	}
	req, err := http.NewRequest(http.MethodPost, tokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	return sendProbe(t, req)
}
