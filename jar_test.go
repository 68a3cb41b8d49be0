package oidcrp

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"log/slog"
	"maps"
	"math/big"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/oidcrp/oidcrp/internal/devop"
)

// requestObjectOf returns the header and claims of the request object the
// login redirect resp carries, and the redirect's query.
func requestObjectOf(t *testing.T, resp *http.Response) (header, claims map[string]any, q url.Values) {
	t.Helper()
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("login start: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	q = loc.Query()
	parts := strings.Split(q.Get("request"), ".")
	if len(parts) != 3 {
		t.Fatalf("the redirect carries no request object: %v", q)
	}
	for i, into := range []*map[string]any{&header, &claims} {
		b, err := base64.RawURLEncoding.DecodeString(parts[i])
		if err != nil || json.Unmarshal(b, into) != nil {
			t.Fatalf("request object part %d unreadable: %v", i, err)
		}
	}
	return header, claims, q
}

// registeredJWKS returns the keys of the provider's only client's jwks.
func registeredJWKS(t *testing.T, op *devop.Provider) []any {
	t.Helper()
	clients := op.Clients()
	if len(clients) != 1 {
		t.Fatalf("%d clients registered, want 1", len(clients))
	}
	set, _ := clients[0].Metadata["jwks"].(map[string]any)
	keys, _ := set["keys"].([]any)
	return keys
}

// TestRequestObjectsConfigured: with Config.RequestObjects the browser's
// redirect carries only client_id, response_type, scope and a request
// object signed with the key registered inline, and the login completes.
func TestRequestObjectsConfigured(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{RequestObjects: true}, Config{RequestObjects: true})
	resp := e.loginStart("/page")
	header, claims, q := requestObjectOf(t, resp)

	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range q {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(keys, []string{"client_id", "request", "response_type", "scope"}) {
		t.Errorf("the redirect carries %v", keys)
	}
	c := e.op.Clients()[0]
	if alg := c.Metadata["request_object_signing_alg"]; alg != "ES256" {
		t.Errorf("request_object_signing_alg %v, want ES256", alg)
	}
	jwks := registeredJWKS(t, e.op)
	if len(jwks) != 1 {
		t.Fatalf("registered jwks %v, want one key", jwks)
	}
	jwk := jwks[0].(map[string]any)
	if jwk["kty"] != "EC" || jwk["crv"] != "P-256" || jwk["d"] != nil || jwk["kid"] == "" {
		t.Errorf("registered key %v, want a public P-256 key with a kid", jwk)
	}
	if header["alg"] != "ES256" || header["typ"] != "oauth-authz-req+jwt" || header["kid"] != jwk["kid"] {
		t.Errorf("request object header %v", header)
	}
	now := e.clock.Now().Unix()
	iat, _ := claims["iat"].(float64)
	exp, _ := claims["exp"].(float64)
	nbf, _ := claims["nbf"].(float64)
	if claims["iss"] != c.ID || claims["aud"] != e.op.Issuer() || claims["client_id"] != c.ID || int64(iat) != now || int64(nbf) != now ||
		exp <= iat || exp-iat > 600 || claims["jti"] == "" || claims["jti"] == nil {
		t.Errorf("request object claims %v", claims)
	}
	for _, k := range pushedParams {
		if s, _ := claims[k].(string); s == "" {
			t.Errorf("the request object lacks %s", k)
		}
	}
	if claims["response_type"] != q.Get("response_type") || claims["scope"] != q.Get("scope") || q.Get("client_id") != c.ID {
		t.Errorf("outside %v, inside %v", q, claims)
	}

	hops := e.follow(resp)
	if last := hops[len(hops)-1]; last.StatusCode != http.StatusOK || last.Request.URL.Path != "/page" {
		t.Fatalf("login with a request object ended with %d at %s\n%s", last.StatusCode, last.Request.URL, e.logs)
	}
	if n := e.op.Stats().RequestObjects; n != 1 {
		t.Errorf("%d request objects verified, want 1", n)
	}

	// The key is in the store, private part included, and a replica sharing
	// the store signs with it: no second registration.
	raw, err := e.rp.cfg.Store.Load(context.Background(), e.rp.cfg.StoreKey+"#keys")
	if err != nil || !strings.Contains(string(raw), `"d":`) || !strings.Contains(string(raw), jwk["kid"].(string)) {
		t.Fatalf("stored signing keys: %v", err)
	}
	var set storedKeys
	if json.Unmarshal(raw, &set) != nil || len(set.Keys) != 1 {
		t.Fatalf("stored signing keys unreadable")
	}
	dBytes, err := set.Keys[0].JWK.Key.(*ecdsa.PrivateKey).Bytes()
	if err != nil {
		t.Fatal(err)
	}
	d := new(big.Int).SetBytes(dBytes).String()
	replica := e.newRP(Config{Store: e.rp.cfg.Store, RequestObjects: true})
	if err := replica.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if st := e.op.Stats(); st.Registration != 1 || st.RegistrationUpdate != 0 {
		t.Errorf("%d registrations and %d updates, want 1 and 0", st.Registration, st.RegistrationUpdate)
	}
	k := replica.lc.keys.signingKey("ES256", replica.lc.cur.Load().creds)
	if k == nil || k.kid != jwk["kid"] {
		t.Fatalf("the replica signs with %v, want kid %v", k, jwk["kid"])
	}
	// The private key never shows.
	for _, s := range []string{fmt.Sprint(k), fmt.Sprintf("%+v %#v %s %x %d", k, k, k, k, k), e.logs.String()} {
		if strings.Contains(s, d) || strings.Contains(s, base64.RawURLEncoding.EncodeToString(dBytes)) {
			t.Errorf("the private key shows: %.200s", s)
		}
	}
}

// TestRequestObjectsRequiredByProvider: a provider requiring signed
// request objects gets them unasked, pushed when it also requires PAR.
func TestRequestObjectsRequiredByProvider(t *testing.T) {
	t.Parallel()
	t.Run("redirect", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, devop.Options{RequireRequestObjects: true}, Config{})
		e.login("/")
		if n := e.op.Stats().RequestObjects; n != 1 {
			t.Errorf("%d request objects verified, want 1", n)
		}
	})
	t.Run("with PAR", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, devop.Options{RequireRequestObjects: true, RequirePAR: true}, Config{})
		e.login("/")
		st := e.op.Stats()
		if st.RequestObjects != 1 || st.PAR != 1 {
			t.Errorf("%d request objects, %d PAR requests, want 1 and 1", st.RequestObjects, st.PAR)
		}
		form, _ := e.op.LastPARRequest()
		if form.Get("request") == "" || form.Get("client_id") == "" || form.Has("redirect_uri") || form.Has("state") || form.Has("nonce") {
			t.Errorf("pushed %v, want the request object with client_id outside", form)
		}
		if q := e.op.LastAuthorizeRequest(); q.Has("request") || !q.Has("request_uri") {
			t.Errorf("the redirect carries %v, want only the request_uri", q)
		}
	})
	t.Run("RS256 only", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, devop.Options{RequireRequestObjects: true, Discovery: func(doc map[string]any) {
			doc["request_object_signing_alg_values_supported"] = []string{"RS256", "PS256"}
		}}, Config{})
		header, _, _ := requestObjectOf(t, e.loginStart("/"))
		if header["alg"] != "RS256" {
			t.Errorf("request object signed with %v, want RS256", header["alg"])
		}
		if alg := e.op.Clients()[0].Metadata["request_object_signing_alg"]; alg != "RS256" {
			t.Errorf("registered request_object_signing_alg %v", alg)
		}
		e.login("/")
	})
}

// TestRequestObjectsWithoutRegisteredKey: a provider that requires signed
// request objects of a client with none of the relying party's keys
// registered gets no authorization request, and the logs say why.
func TestRequestObjectsWithoutRegisteredKey(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		opts devop.Options
		msg  string
	}{
		"the provider dropped the key": {devop.Options{RequireRequestObjects: true, RegistrationRequest: func(m map[string]any) { delete(m, "jwks") }},
			"requires signed request objects (require_signed_request_object), but the provider did not keep the key"},
		"required in the registration only": {devop.Options{RequestObjects: true, Registration: func(_ *int, body map[string]any) {
			body["require_signed_request_object"] = true
		}}, "(require_signed_request_object), but the relying party registered no key (jwks), as neither discovery nor the configuration asked for request objects; set Config.RequestObjects"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts, Config{})
			resp := e.loginStart("/")
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Location") != "" {
				t.Fatalf("login start: %d to %q, want 503 without a redirect", resp.StatusCode, resp.Header.Get("Location"))
			}
			if n := e.op.Stats().Authorize; n != 0 {
				t.Errorf("%d authorization requests", n)
			}
			if !strings.Contains(e.logs.String(), tc.msg) {
				t.Errorf("the logs do not say %q:\n%s", tc.msg, e.logs)
			}
		})
	}
	t.Run("configured client", func(t *testing.T) {
		t.Parallel()
		e := newEnv(t, devop.Options{RequireRequestObjects: true}, Config{})
		if err := e.rp.Ready(context.Background()); err != nil {
			t.Fatal(err)
		}
		c := e.op.Clients()[0]
		static := e.newRP(Config{ClientID: c.ID, ClientSecret: Secret(c.Secret)})
		e.app.Config.Handler = e.handler(static)
		resp := e.loginStart("/")
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("login start: %d, want 503", resp.StatusCode)
		}
		if msg := "the configured client (Config.ClientID) has no key of the relying party registered"; !strings.Contains(e.logs.String(), msg) {
			t.Errorf("the logs do not say %q:\n%s", msg, e.logs)
		}
	})
}

// TestTamperedRequestObjectRefused: devop refuses a request object whose
// claims were changed, one signed by another key under the registered kid,
// and one that expired; none reaches the login.
func TestTamperedRequestObjectRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{RequireRequestObjects: true}, Config{})
	resp := e.loginStart("/")
	header, claims, q := requestObjectOf(t, resp)
	parts := strings.Split(q.Get("request"), ".")
	send := func(request string) (int, string) {
		t.Helper()
		q := cloneValues(q)
		q.Set("request", request)
		r := e.get(e.op.Issuer()+"/authorize?"+q.Encode(), html)
		defer r.Body.Close()
		b := make([]byte, 4096)
		n, _ := r.Body.Read(b)
		return r.StatusCode, string(b[:n])
	}
	encode := func(v any) string {
		b, _ := json.Marshal(v)
		return base64.RawURLEncoding.EncodeToString(b)
	}

	changed := maps.Clone(claims)
	changed["state"] = "chosen-by-the-attacker"
	other, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	signer, _ := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: other},
		(&jose.SignerOptions{}).WithType("oauth-authz-req+jwt").WithHeader("kid", header["kid"]))
	payload, _ := json.Marshal(claims)
	jws, _ := signer.Sign(payload)
	forged, _ := jws.CompactSerialize()

	for name, request := range map[string]string{
		"changed claims": parts[0] + "." + encode(changed) + "." + parts[2],
		"another key":    forged,
		"unsigned":       encode(map[string]any{"alg": "none", "typ": "oauth-authz-req+jwt"}) + "." + parts[1] + ".",
	} {
		if status, body := send(request); status != http.StatusBadRequest || !strings.Contains(body, "request object was refused") {
			t.Errorf("%s: %d %.300s, want 400 refusing the request object", name, status, body)
		}
	}
	e.clock.Advance(10 * time.Minute)
	if status, body := send(q.Get("request")); status != http.StatusBadRequest || !strings.Contains(body, "exp") {
		t.Errorf("expired: %d %.300s, want 400", status, body)
	}
	if n := e.op.Stats().RequestObjects; n != 0 {
		t.Errorf("%d request objects verified, want 0", n)
	}
}

// TestRequestObjectsTurnedOnUpdatesRegistration: turning request objects
// on for a registered client adds the key to its registration in place
// (RFC 7592), and logins then carry request objects.
func TestRequestObjectsTurnedOnUpdatesRegistration(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{RequestObjects: true}, Config{})
	e.login("/")
	if n := e.op.Stats().RequestObjects; n != 0 {
		t.Fatalf("%d request objects before they were asked for", n)
	}
	rp := e.newRP(Config{Store: e.rp.cfg.Store, RequestObjects: true})
	e.app.Config.Handler = e.handler(rp)
	e.browser.Jar, _ = cookiejar.New(nil)
	e.login("/")
	st := e.op.Stats()
	if st.Registration != 1 || st.RegistrationUpdate != 1 || st.RequestObjects != 1 {
		t.Errorf("%d registrations, %d updates, %d request objects; want 1, 1, 1", st.Registration, st.RegistrationUpdate, st.RequestObjects)
	}
	if keys := registeredJWKS(t, e.op); len(keys) != 1 {
		t.Errorf("registered jwks %v", keys)
	}
}

// TestSigningKeySharedByReplicas: replicas sharing a store that start at
// once generate one signing key between them, under the store's lock.
func TestSigningKeySharedByReplicas(t *testing.T) {
	t.Parallel()
	store := new(MemoryStore)
	manager := func() *keyManager {
		return &keyManager{store: store, key: "k#keys", log: slog.New(slog.DiscardHandler), now: time.Now}
	}
	es256 := []keyKind{{"sig", "ES256"}}
	replicas := make([]*keyManager, 4)
	kids := make([]string, len(replicas))
	var wg sync.WaitGroup
	for i := range replicas {
		replicas[i] = manager()
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := replicas[i].ensure(context.Background(), es256); err != nil {
				t.Error(err)
				return
			}
			kids[i] = replicas[i].signingKey("ES256", nil).kid
		}()
	}
	wg.Wait()
	if kids[0] == "" || slices.ContainsFunc(kids, func(k string) bool { return k != kids[0] }) {
		t.Fatalf("replicas sign with %v, want one key", kids)
	}
	// Another algorithm is added next to it, and the first is kept.
	if _, err := replicas[0].ensure(context.Background(), []keyKind{{"sig", "RS256"}, {"sig", "ES256"}}); err != nil {
		t.Fatal(err)
	}
	set, err := manager().load(context.Background())
	if err != nil || len(set) != 2 || set[0].alg != "RS256" || set[1].kid != kids[0] {
		t.Fatalf("stored keys %v (%v), want the RS256 and the ES256 key", set, err)
	}
}
