package oidcrp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/go-jose/go-jose/v4"
	"github.com/oidcrp/oidcrp/internal/devop"
)

// opaqueKey implements crypto.Signer only, as a key in an HSM would.
type opaqueKey struct{ s crypto.Signer }

func (o opaqueKey) Public() crypto.PublicKey { return o.s.Public() }
func (o opaqueKey) Sign(r io.Reader, digest []byte, opts crypto.SignerOpts) ([]byte, error) {
	return o.s.Sign(r, digest, opts)
}

// putKids records the kids of the jwks in every RFC 7592 update request.
type putKids struct {
	mu   sync.Mutex
	puts [][]string
}

func (p *putKids) hook(m map[string]any) {
	if _, isUpdate := m["client_id"]; !isUpdate {
		return
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	p.puts = append(p.puts, registeredKids(m["jwks"]))
}

func (p *putKids) get() [][]string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return slices.Clone(p.puts)
}

// opKids returns the kids the provider holds for its only client.
func opKids(t *testing.T, op *devop.Provider) []string {
	t.Helper()
	c := op.Clients()
	if len(c) != 1 {
		t.Fatalf("%d clients", len(c))
	}
	return registeredKids(c[0].Metadata["jwks"])
}

// lastKid returns the kid of the last assertion the provider accepted.
func lastKid(t *testing.T, op *devop.Provider) string {
	t.Helper()
	as := op.Assertions()
	if len(as) == 0 {
		t.Fatal("no assertion")
	}
	return as[len(as)-1].KeyID
}

// relogin signs in anew with a fresh browser.
func (e *testEnv) relogin() {
	e.t.Helper()
	e.browser.Jar, _ = cookiejar.New(nil)
	e.login("/")
}

// TestBringYourOwnKey: Config.SigningKey, a key or any crypto.Signer, is
// registered and signs the assertions, and is never stored.
func TestBringYourOwnKey(t *testing.T) {
	t.Parallel()
	ec, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	rk, _ := rsa.GenerateKey(rand.Reader, 2048)
	for name, tc := range map[string]struct {
		key crypto.Signer
		alg string
	}{
		"ecdsa":         {ec, "ES256"},
		"opaque ecdsa":  {opaqueKey{ec}, "ES256"},
		"opaque rsa":    {opaqueKey{rk}, "RS256"},
		"rsa as itself": {rk, "RS256"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, devop.Options{AuthMethods: jwtAuth}, Config{SigningKey: tc.key})
			e.login("/")
			kid, err := thumbprint(tc.key.Public())
			if err != nil {
				t.Fatal(err)
			}
			c := e.op.Clients()[0]
			if c.AuthMethod != "private_key_jwt" || c.Metadata["token_endpoint_auth_signing_alg"] != tc.alg || !slices.Equal(opKids(t, e.op), []string{kid}) {
				t.Errorf("registered %s %v %v, want private_key_jwt, %s, %s", c.AuthMethod, c.Metadata["token_endpoint_auth_signing_alg"], opKids(t, e.op), tc.alg, kid)
			}
			as := checkAssertions(t, e.op, c.ID, false)
			if len(as) != 1 || as[0].KeyID != kid || as[0].Alg != tc.alg {
				t.Errorf("assertions %+v", as)
			}
			if s := storedKeySet(t, e.rp); strings.Contains(s, kid) {
				t.Errorf("the application's key is stored: %.100s", s)
			}
			if err := e.rp.RotateKeys(context.Background()); err == nil {
				t.Error("RotateKeys rotated the application's key")
			}
		})
	}
}

// TestHandConfiguredPrivateKeyJWT: a client registered by hand with the
// application's key, configured with ClientID and SigningKey.
func TestHandConfiguredPrivateKeyJWT(t *testing.T) {
	t.Parallel()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	e := newEnv(t, devop.Options{AuthMethods: jwtAuth}, Config{})
	jwk := jose.JSONWebKey{Key: &key.PublicKey, Algorithm: "ES256", Use: "sig"}
	kid, _ := thumbprint(&key.PublicKey)
	jwk.KeyID = kid
	body, _ := json.Marshal(map[string]any{
		"redirect_uris": []string{e.app.URL + "/auth/callback"}, "token_endpoint_auth_method": "private_key_jwt",
		"jwks": jose.JSONWebKeySet{Keys: []jose.JSONWebKey{jwk}},
	})
	resp, err := e.opSrv.Client().Post(e.op.Issuer()+"/register", "application/json", bytes.NewReader(body))
	if err != nil || resp.StatusCode != http.StatusCreated {
		t.Fatalf("registration by hand: %v %v", err, resp)
	}
	resp.Body.Close()
	id := e.op.Clients()[0].ID
	rp := e.newRP(Config{ClientID: id, SigningKey: key, Metadata: ClientMetadata{TokenEndpointAuthMethod: "private_key_jwt"}})
	e.app.Config.Handler = e.handler(rp)
	e.login("/")
	if as := checkAssertions(t, e.op, id, false); len(as) != 1 || as[0].KeyID != kid {
		t.Errorf("assertions %+v", as)
	}
	if n := e.op.Stats().Registration; n != 1 {
		t.Errorf("%d registrations, want the one by hand", n)
	}
	if _, err := New(Config{Issuer: e.op.Issuer(), RedirectURL: e.app.URL + "/cb", ClientID: id, Metadata: ClientMetadata{TokenEndpointAuthMethod: "private_key_jwt"}}); err == nil {
		t.Error("a hand-configured private_key_jwt client without a key was accepted")
	}
}

// TestKeyRotation: a key older than KeyRotation gets a successor, which is
// registered next to it by one update and used from then on; the old key
// is dropped from the registration and the store keyRetireGrace later.
// Sessions made before keep working; two replicas rotate once.
func TestKeyRotation(t *testing.T) {
	t.Parallel()
	puts := &putKids{}
	e := newEnv(t, devop.Options{AuthMethods: jwtAuth, RegistrationRequest: puts.hook, IDTokenLifetime: 72 * time.Hour}, Config{KeyRotation: 24 * time.Hour})
	e.login("/")
	old := lastKid(t, e.op)
	session := e.cookie("oidcrp")
	replica := e.newRP(Config{Store: e.rp.cfg.Store, KeyRotation: 24 * time.Hour})
	if err := replica.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	ctx := context.Background()
	e.rp.lc.maintain(ctx, false)
	if len(puts.get()) != 0 {
		t.Fatalf("a key younger than KeyRotation was rotated: %v", puts.get())
	}

	e.clock.Advance(25 * time.Hour)
	var wg sync.WaitGroup
	for _, rp := range []*RP{e.rp, replica} {
		wg.Go(func() { rp.lc.maintain(ctx, false) })
	}
	wg.Wait()
	p := puts.get()
	if len(p) != 1 || len(p[0]) != 2 || !slices.Contains(p[0], old) {
		t.Fatalf("updates carried %v, want one with the old key and its successor", p)
	}
	both := opKids(t, e.op)
	successor := both[0]
	if successor == old {
		successor = both[1]
	}
	if st := e.op.Stats(); st.Registration != 1 {
		t.Errorf("%d registrations", st.Registration)
	}
	e.relogin()
	if k := lastKid(t, e.op); k != successor {
		t.Errorf("signed with %s after the rotation, want the successor %s", k, successor)
	}
	replica.lc.maintain(ctx, false) // picks up the peer's keys
	if k := replica.lc.keys.signingKey("ES256", replica.lc.cur.Load().creds); k == nil || k.kid != successor {
		t.Errorf("the replica signs with %v", k)
	}
	if st := e.replay("/api", session); st != http.StatusOK {
		t.Errorf("a session made before the rotation: %d", st)
	}

	// Within the grace period, the old key stays registered.
	e.clock.Advance(keyRetireGrace - time.Minute)
	e.rp.lc.maintain(ctx, false)
	if got := opKids(t, e.op); len(got) != 2 || len(puts.get()) != 1 {
		t.Errorf("within the grace period: registered %v after %d updates", got, len(puts.get()))
	}
	e.clock.Advance(2 * time.Minute)
	for _, rp := range []*RP{e.rp, replica} {
		wg.Go(func() { rp.lc.maintain(ctx, false) })
	}
	wg.Wait()
	if got, p := opKids(t, e.op), puts.get(); !slices.Equal(got, []string{successor}) || len(p) != 2 {
		t.Errorf("after the grace period: registered %v after updates %v", got, p)
	}
	if s := storedKeySet(t, e.rp); strings.Contains(s, old) || !strings.Contains(s, successor) {
		t.Errorf("the store still holds the old key, or not the new one")
	}
	if st := e.replay("/api", session); st != http.StatusOK {
		t.Errorf("a session made before the rotation, after the old key went: %d", st)
	}
	e.relogin()
	if k := lastKid(t, e.op); k != successor {
		t.Errorf("signed with %s", k)
	}
}

// TestProviderRefusesRotatedKey: when the provider refuses the new keys,
// the old one stays in use, Status and RotateKeys say why, and the next
// rotation the provider takes clears the error.
func TestProviderRefusesRotatedKey(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{AuthMethods: jwtAuth, RefuseKeyChanges: true}, Config{})
	e.login("/")
	old := lastKid(t, e.op)
	err := e.rp.RotateKeys(context.Background())
	if err == nil {
		t.Fatal("RotateKeys reported no error")
	}
	if st := e.rp.Status(); st.KeyError == "" || !strings.Contains(st.KeyError, "refused") {
		t.Errorf("Status.KeyError %q", st.KeyError)
	}
	e.relogin()
	if k := lastKid(t, e.op); k != old {
		t.Errorf("signed with %s, want the registered %s", k, old)
	}
	e.op.SetRefuseKeyChanges(false)
	e.rp.lc.maintain(context.Background(), false)
	if st := e.rp.Status(); st.KeyError != "" {
		t.Errorf("Status.KeyError after the provider took the keys: %q", st.KeyError)
	}
	if got := opKids(t, e.op); len(got) != 2 {
		t.Errorf("registered %v", got)
	}
	e.relogin()
	if k := lastKid(t, e.op); k == old {
		t.Error("still signing with the old key")
	}
	if err := e.rp.RotateKeys(context.Background()); err != nil {
		t.Errorf("RotateKeys: %v", err)
	}
}

// TestServedJWKS: with JWKSURL the relying party registers jwks_uri,
// serves its public keys there and the provider fetches them; a new key is
// used only keyPublishLead after it appeared.
func TestServedJWKS(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{AuthMethods: jwtAuth}, Config{})
	e.op = nil // replaced below: the provider needs the application's client
	opts := devop.Options{AuthMethods: jwtAuth, AutoLogin: true, Now: e.clock.Now, HTTPClient: e.app.Client()}
	e.op, e.opSrv = newOP(t, opts)
	jwksURL := e.app.URL + "/.well-known/jwks.json"
	e.rp = e.newRP(Config{Issuer: e.op.Issuer(), JWKSURL: jwksURL})
	e.app.Config.Handler = e.handler(e.rp)
	e.browser.Transport = e.opSrv.Client().Transport
	e.login("/")
	c := e.op.Clients()[0]
	if c.Metadata["jwks_uri"] != jwksURL || c.Metadata["jwks"] != nil {
		t.Fatalf("registered jwks_uri %v, jwks %v", c.Metadata["jwks_uri"], c.Metadata["jwks"])
	}
	if n := e.op.Stats().JWKSFetches; n != 1 {
		t.Errorf("%d fetches of the set", n)
	}
	old := lastKid(t, e.op)

	resp, err := e.app.Client().Get(jwksURL)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/jwk-set+json" {
		t.Errorf("GET %s: %d %q", jwksURL, resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	var set map[string][]map[string]any
	if err := json.Unmarshal(b, &set); err != nil || len(set["keys"]) != 1 {
		t.Fatalf("served %s", b)
	}
	for _, member := range []string{"d", "p", "q", "dp", "dq", "qi"} {
		if _, ok := set["keys"][0][member]; ok {
			t.Errorf("the served set holds private member %q", member)
		}
	}
	resp, err = e.app.Client().Post(jwksURL, "application/json", nil)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST %s: %d", jwksURL, resp.StatusCode)
	}

	if err := e.rp.RotateKeys(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := e.op.Stats().RegistrationUpdate; n != 0 {
		t.Errorf("%d registration updates in served mode", n)
	}
	e.relogin()
	if k := lastKid(t, e.op); k != old {
		t.Errorf("a key not yet published for keyPublishLead is used: %s", k)
	}
	e.clock.Advance(keyPublishLead)
	e.rp.lc.maintain(context.Background(), false)
	e.relogin()
	if k := lastKid(t, e.op); k == old {
		t.Error("the new key is not used after keyPublishLead")
	}
	if n := e.op.Stats().JWKSFetches; n < 2 {
		t.Errorf("%d fetches: the provider never saw the new key", n)
	}
}

// TestKeyClientLifecycle: with private_key_jwt, replicas starting at once
// register once with one key; a client the provider forgot is registered
// again with the stored key; Decommission deletes the registration, the
// credentials and the keys.
func TestKeyClientLifecycle(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{AuthMethods: jwtAuth}, Config{})
	replicas := []*RP{e.rp}
	for range 4 {
		replicas = append(replicas, e.newRP(Config{Store: e.rp.cfg.Store}))
	}
	var wg sync.WaitGroup
	for _, rp := range replicas {
		wg.Go(func() {
			if err := rp.Ready(context.Background()); err != nil {
				t.Error(err)
			}
		})
	}
	wg.Wait()
	if st := e.op.Stats(); st.Registration != 1 {
		t.Fatalf("%d registrations, want 1", st.Registration)
	}
	kid := opKids(t, e.op)
	var set storedKeys
	if err := json.Unmarshal([]byte(storedKeySet(t, e.rp)), &set); err != nil || len(set.Keys) != 1 || len(kid) != 1 || set.Keys[0].JWK.KeyID != kid[0] {
		t.Fatalf("stored keys %v, registered %v", err, kid)
	}
	e.login("/")

	// The provider forgets the client between its authorization answer and
	// the token request: the token endpoint says invalid_client.
	e.browser.Jar, _ = cookiejar.New(nil)
	resp := e.get(e.app.URL+"/again", html)
	resp.Body.Close()
	resp = e.get(resp.Header.Get("Location"), html)
	resp.Body.Close()
	e.op.ForgetClients()
	hops := e.follow(e.get(resp.Header.Get("Location"), html))
	last := hops[len(hops)-1]
	last.Body.Close()
	if last.StatusCode != http.StatusOK {
		t.Fatalf("after the provider forgot the client: %d\n%s", last.StatusCode, e.logs)
	}
	if st := e.op.Stats(); st.Registration != 2 {
		t.Errorf("%d registrations, want 2", st.Registration)
	}
	if got := opKids(t, e.op); !slices.Equal(got, kid) {
		t.Errorf("registered again with %v, want the stored %v", got, kid)
	}
	if k := lastKid(t, e.op); k != kid[0] {
		t.Errorf("signed with %s", k)
	}

	if err := e.rp.Decommission(context.Background()); err != nil {
		t.Fatal(err)
	}
	if n := len(e.op.Clients()); n != 0 {
		t.Errorf("%d clients left", n)
	}
	for _, key := range []string{e.rp.cfg.StoreKey, e.rp.cfg.StoreKey + "#keys"} {
		if _, err := e.rp.cfg.Store.Load(context.Background(), key); err != ErrNotFound {
			t.Errorf("%s after Decommission: %v", key, err)
		}
	}
	// The next login registers anew, with a new key.
	e.relogin()
	if got := opKids(t, e.op); len(got) != 1 || got[0] == kid[0] {
		t.Errorf("registered after Decommission with %v", got)
	}
}
