package oidcrp

import (
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"slices"
	"sync"

	"github.com/go-jose/go-jose/v4"
)

// The relying party's own signing keys: generated on first use, one per
// algorithm, and kept as a JSON Web Key Set with the private parts in the
// CredentialStore under signingKeysKey, so that every replica and every
// restart signs with the same key. Only the public half ever leaves the
// process (registered inline as jwks). They sign request objects (jar.go).

// signingKeysKey is where the relying party's signing keys are kept in the
// store, next to the session keys.
const signingKeysKey = "oidcrp:signing-keys"

// signingKey is one private signing key. It never shows its private part:
// printed with any verb or logged, it reads "signing key <kid> (<alg>)".
type signingKey struct {
	alg    string
	kid    string
	priv   crypto.Signer
	signer jose.Signer // typ oauth-authz-req+jwt, kid
}

func (k *signingKey) String() string { return "signing key " + k.kid + " (" + k.alg + ")" }

// Format writes k.String() for every verb.
func (k *signingKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// LogValue keeps slog handlers from reflecting over the key.
func (k *signingKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

// public is the key's public half as registered: kid, alg and use set.
func (k *signingKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.priv.Public(), KeyID: k.kid, Algorithm: k.alg, Use: "sig"}
}

// newSigningKey wraps priv, with alg, naming it by its RFC 7638 thumbprint.
func newSigningKey(alg string, priv crypto.Signer) (*signingKey, error) {
	pub := jose.JSONWebKey{Key: priv.Public()}
	tp, err := pub.Thumbprint(crypto.SHA256)
	if err != nil {
		return nil, err
	}
	k := &signingKey{alg: alg, kid: base64.RawURLEncoding.EncodeToString(tp), priv: priv}
	k.signer, err = jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(alg), Key: priv},
		(&jose.SignerOptions{}).WithType("oauth-authz-req+jwt").WithHeader("kid", k.kid))
	if err != nil {
		return nil, err
	}
	return k, nil
}

// generateSigningKey makes a fresh key for alg: P-256 for ES256, RSA-2048
// for RS256.
func generateSigningKey(alg string) (*signingKey, error) {
	var priv crypto.Signer
	var err error
	switch alg {
	case "ES256":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("oidcrp: no signing key for %q", alg)
	}
	if err != nil {
		return nil, err
	}
	return newSigningKey(alg, priv)
}

// signingAlg picks the algorithm of the relying party's key from those the
// provider accepts for request objects: ES256, else RS256; ES256 when it
// lists none.
func signingAlg(d *discovery) (string, error) {
	supported := d.RequestObjectSigningAlgValuesSupported
	switch {
	case len(supported) == 0 || slices.Contains(supported, "ES256"):
		return "ES256", nil
	case slices.Contains(supported, "RS256"):
		return "RS256", nil
	}
	return "", fmt.Errorf("oidcrp: provider %s accepts request objects signed with %q only; the relying party signs with ES256 or RS256", d.Issuer, supported)
}

// rpKeys loads the relying party's signing keys from the store, generating
// a missing one under the store's lock, and keeps them in memory.
type rpKeys struct {
	store CredentialStore
	log   *slog.Logger

	mu   sync.Mutex
	keys map[string]*signingKey // by algorithm
}

// cached returns the key for alg if it was loaded, without I/O.
func (r *rpKeys) cached(alg string) *signingKey {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.keys[alg]
}

// key returns the key for alg, loading it from the store, or generating
// and storing it the first time.
func (r *rpKeys) key(ctx context.Context, alg string) (*signingKey, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	if k := r.keys[alg]; k != nil {
		return k, nil
	}
	set, err := r.load(ctx)
	if err != nil {
		return nil, err
	}
	if k := set[alg]; k != nil {
		r.remember(set)
		return k, nil
	}
	if l, ok := r.store.(Locker); ok {
		unlock, err := l.Lock(ctx, signingKeysKey)
		if err != nil {
			return nil, fmt.Errorf("oidcrp: lock for the signing keys: %w", err)
		}
		defer unlock()
		if set, err = r.load(ctx); err != nil {
			return nil, err
		}
		if k := set[alg]; k != nil {
			r.remember(set)
			return k, nil
		}
	}
	k, err := generateSigningKey(alg)
	if err != nil {
		return nil, err
	}
	set[alg] = k
	if err := r.save(ctx, set); err != nil {
		return nil, err
	}
	r.remember(set)
	r.log.Info("oidcrp: generated a signing key of the relying party and stored it", "key", signingKeysKey, "kid", k.kid, "alg", alg)
	return k, nil
}

func (r *rpKeys) remember(set map[string]*signingKey) {
	if r.keys == nil {
		r.keys = map[string]*signingKey{}
	}
	for alg, k := range set {
		r.keys[alg] = k
	}
}

// load reads the stored key set; none stored is an empty set.
func (r *rpKeys) load(ctx context.Context) (map[string]*signingKey, error) {
	set := map[string]*signingKey{}
	b, err := r.store.Load(ctx, signingKeysKey)
	if errors.Is(err, ErrNotFound) {
		return set, nil
	}
	if err != nil {
		return nil, err
	}
	var jwks jose.JSONWebKeySet
	if err := json.Unmarshal(b, &jwks); err != nil {
		return nil, fmt.Errorf("%w: signing keys under %q", ErrCorruptStore, signingKeysKey)
	}
	for _, jwk := range jwks.Keys {
		priv, ok := jwk.Key.(crypto.Signer)
		if !ok || jwk.IsPublic() || !jwk.Valid() {
			return nil, fmt.Errorf("%w: signing keys under %q: a key without its private part", ErrCorruptStore, signingKeysKey)
		}
		k, err := newSigningKey(jwk.Algorithm, priv)
		if err != nil || k.kid != jwk.KeyID {
			return nil, fmt.Errorf("%w: signing keys under %q: key %q unusable", ErrCorruptStore, signingKeysKey, jwk.KeyID)
		}
		set[jwk.Algorithm] = k
	}
	return set, nil
}

func (r *rpKeys) save(ctx context.Context, set map[string]*signingKey) error {
	var jwks jose.JSONWebKeySet
	for _, alg := range slices.Sorted(maps.Keys(set)) {
		k := set[alg]
		jwks.Keys = append(jwks.Keys, jose.JSONWebKey{Key: k.priv, KeyID: k.kid, Algorithm: k.alg, Use: "sig"})
	}
	b, err := json.Marshal(jwks)
	if err != nil {
		return err
	}
	if err := r.store.Save(ctx, signingKeysKey, b); err != nil {
		return fmt.Errorf("oidcrp: save the signing keys: %w", err)
	}
	return nil
}
