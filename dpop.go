package oidcrp

import (
	"bytes"
	"context"
	"crypto"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"slices"
	"strings"
	"sync"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
)

// DPoP (RFC 9449): sender-constrained tokens. Each session has its own
// P-256 key, derived at login start from the attempt's secret seed (sealed
// in the login cookie) and then kept in the session (sealed in its cookie,
// or in the server-side record). The authorization request names the key's
// thumbprint (dpop_jkt, in the PAR body with PAR); the token and refresh
// requests carry proofs signed with it; and [UserClient] sends a
// DPoP-bound access token as "Authorization: DPoP" with a proof that names
// the token (ath). A server's nonce challenge (use_dpop_nonce) is answered
// once with the nonce it gave, which is remembered for its origin.

// dpopAlg is the only algorithm the relying party signs proofs with.
const dpopAlg = "ES256"

// checkDPoP fails a setup whose configuration asks for DPoP from a
// provider that accepts proofs, but none signed with ES256.
func checkDPoP(cfg *Config, d *discovery) error {
	if cfg.DPoP && len(d.DPoPSigningAlgValuesSupported) > 0 && !slices.Contains(d.DPoPSigningAlgValuesSupported, dpopAlg) {
		return fmt.Errorf("oidcrp: Config.DPoP is set but provider %s accepts DPoP proofs signed with %q only, not %s", d.Issuer, d.DPoPSigningAlgValuesSupported, dpopAlg)
	}
	return nil
}

// useDPoP reports whether c's logins get DPoP-bound tokens: the
// configuration asks for them, or the provider advertises DPoP with ES256
// and the registration asks for bound tokens (dpop_bound_access_tokens).
func (c *client) useDPoP(cfg *Config) bool {
	return cfg.DPoP || (slices.Contains(c.disc.DPoPSigningAlgValuesSupported, dpopAlg) &&
		c.creds.Metadata.Extra["dpop_bound_access_tokens"] == true)
}

// dpopKey is a session's DPoP key. It is made from its 32-byte scalar;
// the key, signer and thumbprint are built on first use, so that opening a
// session cookie costs nothing until a proof is needed.
type dpopKey struct {
	raw []byte // the private scalar, big-endian, 32 bytes

	once   sync.Once
	priv   *ecdsa.PrivateKey
	signer jose.Signer
	jkt    string // RFC 7638 thumbprint, base64url
	err    error
}

// newDPoPKey returns a fresh random key.
func newDPoPKey() *dpopKey {
	priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		panic(err) // crypto/rand does not fail
	}
	raw, _ := priv.Bytes()
	return &dpopKey{raw: raw}
}

// dpopKeyFromSeed derives a key from 32 secret bytes: the first SHA-256
// chain value that is a valid P-256 scalar (any but about one in 2^32 is).
func dpopKeyFromSeed(seed []byte) *dpopKey {
	h := sha256.Sum256(append([]byte("oidcrp dpop\x00"), seed...))
	for {
		if _, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), h[:]); err == nil {
			return &dpopKey{raw: h[:]}
		}
		h = sha256.Sum256(h[:])
	}
}

func (k *dpopKey) init() error {
	k.once.Do(func() {
		priv, err := ecdsa.ParseRawPrivateKey(elliptic.P256(), k.raw)
		if err != nil {
			k.err = fmt.Errorf("oidcrp: DPoP key: %w", err)
			return
		}
		pub := jose.JSONWebKey{Key: &priv.PublicKey}
		tp, err := pub.Thumbprint(crypto.SHA256)
		if err != nil {
			k.err = fmt.Errorf("oidcrp: DPoP key thumbprint: %w", err)
			return
		}
		signer, err := jose.NewSigner(jose.SigningKey{Algorithm: jose.ES256, Key: priv},
			(&jose.SignerOptions{EmbedJWK: true}).WithType("dpop+jwt"))
		if err != nil {
			k.err = fmt.Errorf("oidcrp: DPoP signer: %w", err)
			return
		}
		k.priv, k.signer, k.jkt = priv, signer, base64.RawURLEncoding.EncodeToString(tp)
	})
	return k.err
}

// thumbprint returns the key's JWK SHA-256 thumbprint (RFC 7638), the
// dpop_jkt of the authorization request.
func (k *dpopKey) thumbprint() (string, error) {
	if err := k.init(); err != nil {
		return "", err
	}
	return k.jkt, nil
}

// dpopClaims is the payload of a proof (RFC 9449 §4.2).
type dpopClaims struct {
	JTI   string `json:"jti"`
	HTM   string `json:"htm"`
	HTU   string `json:"htu"`
	IAT   int64  `json:"iat"`
	Nonce string `json:"nonce,omitempty"`
	ATH   string `json:"ath,omitempty"`
}

// proof returns a DPoP proof for a request with method and target URL,
// issued at now: htu is the URL without its query and fragment; nonce is
// the server's, if it gave one; accessToken, for a request to a resource
// server, is named by its hash (ath).
func (k *dpopKey) proof(method, target, nonce, accessToken string, now time.Time) (string, error) {
	if err := k.init(); err != nil {
		return "", err
	}
	htu, _, _ := strings.Cut(target, "#")
	htu, _, _ = strings.Cut(htu, "?")
	var jti [16]byte
	rand.Read(jti[:])
	c := dpopClaims{JTI: base64.RawURLEncoding.EncodeToString(jti[:]), HTM: method, HTU: htu, IAT: now.Unix(), Nonce: nonce}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		c.ATH = base64.RawURLEncoding.EncodeToString(sum[:])
	}
	payload, err := json.Marshal(c)
	if err != nil {
		return "", err
	}
	jws, err := k.signer.Sign(payload)
	if err != nil {
		return "", fmt.Errorf("oidcrp: sign a DPoP proof: %w", err)
	}
	return jws.CompactSerialize()
}

// dpopNonces remembers the last DPoP-Nonce each origin sent, so that the
// next proof to it carries the nonce without being challenged first. It
// holds at most maxDPoPNonces origins.
type dpopNonces struct {
	mu sync.Mutex
	m  map[string]string
}

const maxDPoPNonces = 1024

func (n *dpopNonces) get(origin string) string {
	n.mu.Lock()
	defer n.mu.Unlock()
	return n.m[origin]
}

func (n *dpopNonces) set(origin, nonce string) {
	if nonce == "" || len(nonce) > 1024 {
		return
	}
	n.mu.Lock()
	defer n.mu.Unlock()
	if n.m == nil || len(n.m) >= maxDPoPNonces {
		n.m = map[string]string{}
	}
	n.m[origin] = nonce
}

// dpopTransport adds a DPoP proof to each request. A request carrying
// "Authorization: DPoP <token>" (a resource request: [UserClient], or
// go-oidc reading userinfo) gets a proof naming the token (ath). An answer
// asking for a nonce (use_dpop_nonce: a token endpoint's 400, a resource
// server's 401) is retried once with the nonce it gave, when the request's
// body can be sent again.
type dpopTransport struct {
	key    *dpopKey
	base   http.RoundTripper
	nonces *dpopNonces
	now    func() time.Time
}

func (t *dpopTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	var token string
	if scheme, tok, ok := strings.Cut(req.Header.Get("Authorization"), " "); ok && strings.EqualFold(scheme, "DPoP") {
		token = tok
	}
	origin := req.URL.Scheme + "://" + req.URL.Host
	send := func(r *http.Request, nonce string) (*http.Response, error) {
		p, err := t.key.proof(r.Method, r.URL.String(), nonce, token, t.now())
		if err != nil {
			if r.Body != nil {
				r.Body.Close() // RoundTrip must close the body, even on errors
			}
			return nil, err
		}
		r.Header.Set("DPoP", p)
		resp, err := t.base.RoundTrip(r)
		if err == nil {
			t.nonces.set(origin, resp.Header.Get("DPoP-Nonce"))
		}
		return resp, err
	}
	first := req.Clone(req.Context()) // RoundTrip must not modify the request
	resp, err := send(first, t.nonces.get(origin))
	if err != nil {
		return nil, err
	}
	nonce := resp.Header.Get("DPoP-Nonce")
	if nonce == "" || (req.Body != nil && req.Body != http.NoBody && req.GetBody == nil) || !nonceChallenge(resp) {
		return resp, nil
	}
	resp.Body.Close()
	retry := req.Clone(req.Context())
	if req.GetBody != nil {
		if retry.Body, err = req.GetBody(); err != nil {
			return nil, err
		}
	}
	return send(retry, nonce)
}

// nonceChallenge reports whether resp asks for a DPoP nonce (RFC 9449 §8
// and §9): a 401 whose DPoP challenge has error="use_dpop_nonce", or a 400
// whose JSON error is use_dpop_nonce. A 400's body is read and put back.
func nonceChallenge(resp *http.Response) bool {
	switch resp.StatusCode {
	case http.StatusUnauthorized:
		for _, v := range resp.Header.Values("WWW-Authenticate") {
			if strings.Contains(v, "use_dpop_nonce") {
				return true
			}
		}
	case http.StatusBadRequest:
		b, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
		resp.Body.Close()
		resp.Body = io.NopCloser(bytes.NewReader(b))
		var e struct {
			Error string `json:"error"`
		}
		return err == nil && json.Unmarshal(b, &e) == nil && e.Error == "use_dpop_nonce"
	}
	return false
}

// dpopHTTPClient returns hc sending proofs made with key.
func (rp *RP) dpopHTTPClient(hc *http.Client, key *dpopKey) *http.Client {
	base := hc.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	out := *hc
	out.Transport = &dpopTransport{key: key, base: base, nonces: &rp.dpopNonces, now: rp.now}
	return &out
}

// providerContext returns the context for a request to c's token or
// userinfo endpoint: with proofs made with key when the session has one.
func (rp *RP) providerContext(ctx context.Context, c *client, key *dpopKey) context.Context {
	if key == nil {
		return c.context(ctx)
	}
	return oidc.ClientContext(ctx, rp.dpopHTTPClient(c.http, key))
}

// errNoDPoPKey is the error of a DPoP-bound token in a session without a
// key: it cannot be used.
var errNoDPoPKey = errors.New("oidcrp: the access token is DPoP-bound but the session has no DPoP key")

// scalar returns what a session stores of k: its private scalar, or nil.
func (k *dpopKey) scalar() []byte {
	if k == nil {
		return nil
	}
	return k.raw
}

// decodeDPoPKey is the key of a stored session, or nil: a malformed one
// fails when a proof is made.
func decodeDPoPKey(raw []byte) *dpopKey {
	if len(raw) == 0 {
		return nil
	}
	return &dpopKey{raw: raw}
}

// storedTokenType is the token type a session stores: none for Bearer, the
// default.
func storedTokenType(t string) string {
	if strings.EqualFold(t, "Bearer") {
		return ""
	}
	return t
}
