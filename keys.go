package oidcrp

import (
	"cmp"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/asn1"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math/big"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// The relying party's own keys: signing keys for client assertions
// (private_key_jwt, RFC 7523, auth.go) and request objects (RFC 9101,
// jar.go), and encryption keys for the ID tokens and userinfo responses the
// provider encrypts (OIDC Core §10.2, encryption.go). They are generated on
// first use, one per use and algorithm, and kept with their private parts in
// the CredentialStore under StoreKey+"#keys", so that every replica and
// every restart uses the same keys. Only public halves leave the process:
// registered inline (jwks), or served at Config.JWKSURL (jwks_uri).
//
// Rotation: a key older than Config.KeyRotation gets a successor, which is
// published at once (an RFC 7592 update of the registration for inline
// jwks, the served set otherwise) and used only once published: when the
// registration holds it, or keyPublishLead after it appeared in the served
// set, as providers cache a client's set. Its predecessor then retires: it
// stays published, and able to decrypt, for keyRetireGrace, and is deleted
// after that. Rotation runs under the store's lock: one replica rotates.

// Timing of key rotation.
const (
	defaultKeyRotation = 30 * 24 * time.Hour
	keyPublishLead     = time.Hour     // a key in a served set is used this long after it appeared
	keyRetireGrace     = 2 * time.Hour // a superseded key stays published this long: replicas reload hourly
	keysReloadEvery    = time.Minute   // how stale the served set may be
)

// keyKind is what a key is for: its use ("sig" or "enc") and algorithm.
type keyKind struct{ use, alg string }

// rpKey is one key of the relying party. It never shows its private part:
// printed with any verb or logged, it reads "key <kid> (<use> <alg>)".
type rpKey struct {
	keyKind
	kid     string
	priv    crypto.PrivateKey // *ecdsa.PrivateKey or *rsa.PrivateKey; any crypto.Signer for Config.SigningKey
	created time.Time
	retired time.Time // zero while current or next
	own     bool      // Config.SigningKey: neither stored nor rotated
}

func (k *rpKey) String() string { return "key " + k.kid + " (" + k.use + " " + k.alg + ")" }

// Format writes k.String() for every verb.
func (k *rpKey) Format(f fmt.State, _ rune) { io.WriteString(f, k.String()) }

// LogValue keeps slog handlers from reflecting over the key.
func (k *rpKey) LogValue() slog.Value { return slog.StringValue(k.String()) }

func (k *rpKey) publicKey() crypto.PublicKey {
	return k.priv.(interface{ Public() crypto.PublicKey }).Public()
}

// public is the key's public half as registered: kid, alg and use set.
func (k *rpKey) public() jose.JSONWebKey {
	return jose.JSONWebKey{Key: k.publicKey(), KeyID: k.kid, Algorithm: k.alg, Use: k.use}
}

// sign returns a compact JWS of payload with typ in its header (none when
// empty) and the key's kid.
func (k *rpKey) sign(typ string, payload []byte) (string, error) {
	var key any = k.priv
	if _, ok := k.priv.(*ecdsa.PrivateKey); !ok {
		if _, ok := k.priv.(*rsa.PrivateKey); !ok {
			key = opaqueSigner{k}
		}
	}
	opts := (&jose.SignerOptions{}).WithHeader("kid", k.kid)
	if typ != "" {
		opts = opts.WithType(jose.ContentType(typ))
	}
	s, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.SignatureAlgorithm(k.alg), Key: key}, opts)
	if err != nil {
		return "", err
	}
	jws, err := s.Sign(payload)
	if err != nil {
		return "", err
	}
	return jws.CompactSerialize()
}

// opaqueSigner signs with an application's crypto.Signer (a key in an HSM
// or a KMS) through go-jose.
type opaqueSigner struct{ k *rpKey }

func (o opaqueSigner) Public() *jose.JSONWebKey {
	pub := o.k.public()
	return &pub
}

func (o opaqueSigner) Algs() []jose.SignatureAlgorithm {
	return []jose.SignatureAlgorithm{jose.SignatureAlgorithm(o.k.alg)}
}

func (o opaqueSigner) SignPayload(payload []byte, alg jose.SignatureAlgorithm) ([]byte, error) {
	if string(alg) != o.k.alg {
		return nil, fmt.Errorf("oidcrp: key %s signs %s, not %s", o.k.kid, o.k.alg, alg)
	}
	h := crypto.SHA256.New()
	h.Write(payload)
	sig, err := o.k.priv.(crypto.Signer).Sign(rand.Reader, h.Sum(nil), crypto.SHA256)
	if err != nil || alg != jose.ES256 {
		return sig, err
	}
	// JWS wants r||s, crypto.Signer gives ASN.1 (RFC 7518 §3.4).
	var rs struct{ R, S *big.Int }
	if _, err := asn1.Unmarshal(sig, &rs); err != nil {
		return nil, fmt.Errorf("oidcrp: the signing key's ES256 signature: %w", err)
	}
	out := make([]byte, 64)
	rs.R.FillBytes(out[:32])
	rs.S.FillBytes(out[32:])
	return out, nil
}

// thumbprint names a public key by its RFC 7638 thumbprint.
func thumbprint(pub crypto.PublicKey) (string, error) {
	tp, err := (&jose.JSONWebKey{Key: pub}).Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return base64.RawURLEncoding.EncodeToString(tp), nil
}

// generateKey makes a fresh key of kind: P-256 for ES256 and ECDH-ES,
// RSA-2048 for RS256 and RSA-OAEP(-256).
func generateKey(kind keyKind, now time.Time) (*rpKey, error) {
	var priv crypto.Signer
	var err error
	switch kind.alg {
	case "ES256", "ECDH-ES":
		priv, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	case "RS256", "RSA-OAEP-256", "RSA-OAEP":
		priv, err = rsa.GenerateKey(rand.Reader, 2048)
	default:
		return nil, fmt.Errorf("oidcrp: no key for %q", kind.alg)
	}
	if err != nil {
		return nil, err
	}
	kid, err := thumbprint(priv.Public())
	if err != nil {
		return nil, err
	}
	return &rpKey{keyKind: kind, kid: kid, priv: priv, created: now}, nil
}

// ownKey wraps the application's signing key: ES256 for an ECDSA P-256
// key, RS256 for an RSA key of at least 2048 bits.
func ownKey(s crypto.Signer) (*rpKey, error) {
	alg := ""
	switch pub := s.Public().(type) {
	case *ecdsa.PublicKey:
		if pub.Curve == elliptic.P256() {
			alg = "ES256"
		}
	case *rsa.PublicKey:
		if pub.N.BitLen() >= 2048 {
			alg = "RS256"
		}
	}
	if alg == "" {
		return nil, errors.New("oidcrp: Config.SigningKey must be an ECDSA P-256 key or an RSA key of at least 2048 bits")
	}
	kid, err := thumbprint(s.Public())
	if err != nil {
		return nil, fmt.Errorf("oidcrp: Config.SigningKey: %w", err)
	}
	return &rpKey{keyKind: keyKind{"sig", alg}, kid: kid, priv: s, own: true}, nil
}

// keyManager keeps the relying party's keys: it loads them from the store,
// generates missing ones and rotates them under the store's lock, and keeps
// the set in memory, newest first.
type keyManager struct {
	store    CredentialStore
	key      string // in store
	log      *slog.Logger
	now      func() time.Time
	rotation time.Duration // <= 0: never
	served   bool          // published at Config.JWKSURL rather than inline
	own      *rpKey        // Config.SigningKey, or nil

	mu       sync.Mutex
	keys     []*rpKey // newest first
	loadedAt time.Time
}

// all returns the keys in use, without I/O: the application's first, then
// the generated ones, newest first.
func (m *keyManager) all() []*rpKey {
	m.mu.Lock()
	defer m.mu.Unlock()
	out := make([]*rpKey, 0, len(m.keys)+1)
	if m.own != nil {
		out = append(out, m.own)
	}
	return append(out, m.keys...)
}

// publicSet is the JWK Set of keys, public parts only.
func publicSet(keys []*rpKey) jose.JSONWebKeySet {
	set := jose.JSONWebKeySet{Keys: make([]jose.JSONWebKey, 0, len(keys))}
	for _, k := range keys {
		set.Keys = append(set.Keys, k.public())
	}
	return set
}

// published reports whether the provider can know k: the application's
// key and keys in the registered jwks are, and a key in the served set is
// once it has been there keyPublishLead.
func (m *keyManager) published(k *rpKey, creds *credentials) bool {
	switch {
	case k.own:
		return true
	case m.served:
		return !m.now().Before(k.created.Add(keyPublishLead))
	}
	return creds != nil && registeredKey(creds.Metadata.Extra["jwks"], k.kid)
}

// signingKey returns the key to sign with alg for the client holding
// creds: the newest published one, else the oldest (the one the provider
// most likely knows: a served set's first key is fetched at once, and
// keyPublishLead matters only for a successor), or nil.
func (m *keyManager) signingKey(alg string, creds *credentials) *rpKey {
	var oldest *rpKey
	for _, k := range m.all() {
		if k.use != "sig" || k.alg != alg {
			continue
		}
		if m.published(k, creds) {
			return k
		}
		oldest = k
	}
	return oldest
}

// decryptionKeys returns the encryption keys, newest first, retired ones
// included: a token encrypted to one may still arrive.
func (m *keyManager) decryptionKeys() []*rpKey {
	var out []*rpKey
	for _, k := range m.all() {
		if k.use == "enc" {
			out = append(out, k)
		}
	}
	return out
}

// ensure makes the set hold a key of each kind in need, generating
// missing ones under the store's lock, and returns it. Kinds the
// application's key covers are not generated.
func (m *keyManager) ensure(ctx context.Context, need []keyKind) ([]*rpKey, error) {
	missing := func(set []*rpKey) []keyKind {
		var out []keyKind
		for _, kind := range need {
			if (m.own == nil || m.own.keyKind != kind) && !slices.Contains(out, kind) &&
				!slices.ContainsFunc(set, func(k *rpKey) bool { return k.keyKind == kind }) {
				out = append(out, kind)
			}
		}
		return out
	}
	if len(missing(m.all())) == 0 {
		return m.all(), nil
	}
	err := m.update(ctx, func(set []*rpKey) ([]*rpKey, bool, error) {
		kinds := missing(set)
		for _, kind := range kinds {
			k, err := generateKey(kind, m.now())
			if err != nil {
				return nil, false, err
			}
			set = append([]*rpKey{k}, set...)
			m.log.Info("oidcrp: generated a key of the relying party and stored it", "key", m.key, "kid", k.kid, "use", k.use, "alg", k.alg)
		}
		return set, len(kinds) > 0, nil
	})
	if err != nil {
		return nil, err
	}
	return m.all(), nil
}

// rotate gives every kind of key whose newest key is older than the
// rotation period (every kind, with force) a successor, retires keys whose
// successor is published (published reports that), and deletes keys
// retired for keyRetireGrace.
func (m *keyManager) rotate(ctx context.Context, force bool, published func(*rpKey) bool) error {
	if !m.generated() && !force {
		return nil // only generated keys rotate
	}
	return m.update(ctx, func(set []*rpKey) ([]*rpKey, bool, error) {
		now, changed := m.now(), false
		newest := map[keyKind]*rpKey{}
		for _, k := range set {
			if newest[k.keyKind] == nil {
				newest[k.keyKind] = k
			}
		}
		for _, kind := range slices.SortedFunc(maps.Keys(newest), compareKinds) {
			k := newest[kind]
			if force || (m.rotation > 0 && now.Sub(k.created) >= m.rotation) {
				next, err := generateKey(kind, now)
				if err != nil {
					return nil, false, err
				}
				set = append([]*rpKey{next}, set...)
				newest[kind], changed = next, true
				m.log.Info("oidcrp: generated the successor of a key of the relying party; it is used once published", "kid", next.kid, "replaces", k.kid, "use", kind.use, "alg", kind.alg)
			}
		}
		kept := set[:0:0]
		for _, k := range set {
			switch {
			case newest[k.keyKind] != k && k.retired.IsZero() && published(newest[k.keyKind]):
				k.retired, changed = now, true
				m.log.Info("oidcrp: retired a key of the relying party: its successor is published", "kid", k.kid, "deleted_after", now.Add(keyRetireGrace))
			case !k.retired.IsZero() && now.Sub(k.retired) >= keyRetireGrace:
				changed = true
				m.log.Info("oidcrp: deleted a retired key of the relying party", "kid", k.kid)
				continue
			}
			kept = append(kept, k)
		}
		return kept, changed, nil
	})
}

// generated reports whether the relying party uses keys it generated, as
// opposed to none or the application's own only. It does no I/O.
func (m *keyManager) generated() bool {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.keys) > 0
}

func compareKinds(a, b keyKind) int {
	return cmp.Or(strings.Compare(a.use, b.use), strings.Compare(a.alg, b.alg))
}

// update applies fn to the stored set under the store's lock, saves the
// result when fn reports a change, and keeps it in memory.
func (m *keyManager) update(ctx context.Context, fn func([]*rpKey) ([]*rpKey, bool, error)) error {
	if l, ok := m.store.(Locker); ok {
		unlock, err := l.Lock(ctx, m.key)
		if err != nil {
			return fmt.Errorf("oidcrp: lock the relying party's keys: %w", err)
		}
		defer unlock()
	}
	set, err := m.load(ctx)
	if err != nil {
		return err
	}
	set, changed, err := fn(set)
	if err != nil {
		return err
	}
	if changed {
		if err := m.save(ctx, set); err != nil {
			return err
		}
	}
	m.remember(set)
	return nil
}

// reload reads the stored set again when it was read more than every ago.
func (m *keyManager) reload(ctx context.Context, every time.Duration) error {
	m.mu.Lock()
	fresh := !m.loadedAt.IsZero() && m.now().Sub(m.loadedAt) < every
	m.mu.Unlock()
	if fresh {
		return nil
	}
	set, err := m.load(ctx)
	if err != nil {
		return err
	}
	m.remember(set)
	return nil
}

func (m *keyManager) remember(set []*rpKey) {
	m.mu.Lock()
	defer m.mu.Unlock()
	m.keys, m.loadedAt = set, m.now()
}

// storedKeys is the stored form of the set.
type storedKeys struct {
	Version int         `json:"version"`
	Keys    []storedKey `json:"keys"`
}

// storedKey is one key of storedKeys: its JWK, private part included, and
// when it was made and retired (unix seconds; 0: not retired).
type storedKey struct {
	JWK     jose.JSONWebKey `json:"jwk"`
	Created int64           `json:"created"`
	Retired int64           `json:"retired,omitempty"`
}

// load reads the stored set, newest first; none stored is an empty set.
func (m *keyManager) load(ctx context.Context) ([]*rpKey, error) {
	b, err := m.store.Load(ctx, m.key)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("oidcrp: load the relying party's keys: %w", err)
	}
	corrupt := func(why string) error {
		return fmt.Errorf("%w: the relying party's keys under %q: %s", ErrCorruptStore, m.key, why)
	}
	var s storedKeys
	if err := json.Unmarshal(b, &s); err != nil || s.Version != 1 {
		return nil, corrupt("unreadable")
	}
	set := make([]*rpKey, 0, len(s.Keys))
	for _, sk := range s.Keys {
		jwk := sk.JWK
		_, isEC := jwk.Key.(*ecdsa.PrivateKey)
		_, isRSA := jwk.Key.(*rsa.PrivateKey)
		if (!isEC && !isRSA) || !jwk.Valid() || (jwk.Use != "sig" && jwk.Use != "enc") {
			return nil, corrupt("a key without its private part")
		}
		k := &rpKey{keyKind: keyKind{jwk.Use, jwk.Algorithm}, kid: jwk.KeyID, priv: jwk.Key, created: time.Unix(sk.Created, 0)}
		if sk.Retired > 0 {
			k.retired = time.Unix(sk.Retired, 0)
		}
		if kid, err := thumbprint(k.publicKey()); err != nil || kid != k.kid {
			return nil, corrupt(fmt.Sprintf("key %q does not match its kid", truncate(k.kid, 60)))
		}
		set = append(set, k)
	}
	slices.SortStableFunc(set, func(a, b *rpKey) int { return b.created.Compare(a.created) })
	return set, nil
}

func (m *keyManager) save(ctx context.Context, set []*rpKey) error {
	s := storedKeys{Version: 1}
	for _, k := range set {
		jwk := jose.JSONWebKey{Key: k.priv, KeyID: k.kid, Algorithm: k.alg, Use: k.use}
		s.Keys = append(s.Keys, storedKey{JWK: jwk, Created: k.created.Unix(), Retired: unixOrZero(k.retired)})
	}
	b, err := json.Marshal(s)
	if err != nil {
		return err
	}
	if err := m.store.Save(ctx, m.key, b); err != nil {
		return fmt.Errorf("oidcrp: save the relying party's keys: %w", err)
	}
	return nil
}

// registeredKey reports whether the registered jwks holds a key named kid.
func registeredKey(jwks any, kid string) bool { return slices.Contains(registeredKids(jwks), kid) }

// registeredKids returns the kids of the registered jwks.
func registeredKids(jwks any) []string {
	set, _ := jwks.(map[string]any)
	keys, _ := set["keys"].([]any)
	var kids []string
	for _, k := range keys {
		if m, _ := k.(map[string]any); m != nil {
			if kid, _ := m["kid"].(string); kid != "" {
				kids = append(kids, kid)
			}
		}
	}
	slices.Sort(kids)
	return kids
}

// jwksMetadata is a public set as a metadata value (jwks).
func jwksMetadata(keys []*rpKey) (map[string]any, error) {
	b, err := json.Marshal(publicSet(keys))
	if err != nil {
		return nil, err
	}
	var v map[string]any
	return v, json.Unmarshal(b, &v)
}

// kids returns the sorted kids of keys.
func kids(keys []*rpKey) []string {
	out := make([]string, 0, len(keys))
	for _, k := range keys {
		out = append(out, k.kid)
	}
	slices.Sort(out)
	return out
}
