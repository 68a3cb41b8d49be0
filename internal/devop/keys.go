package devop

import (
	"bytes"
	"crypto"
	"crypto/hmac"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"strings"

	jose "github.com/go-jose/go-jose/v4"
)

// signingKey is an RS256 key pair with its key id.
type signingKey struct {
	kid  string
	priv *rsa.PrivateKey
}

// newSigningKey generates an RSA-2048 key whose kid is its RFC 7638
// thumbprint.
func newSigningKey() *signingKey {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		panic("devop: generating RSA key: " + err.Error())
	}
	return signingKeyFor(priv)
}

// signingKeyFor returns priv with its RFC 7638 thumbprint as kid.
func signingKeyFor(priv *rsa.PrivateKey) *signingKey {
	jwk := jose.JSONWebKey{Key: &priv.PublicKey}
	tp, err := jwk.Thumbprint(crypto.SHA256)
	if err != nil {
		panic("devop: key thumbprint: " + err.Error())
	}
	return &signingKey{kid: base64.RawURLEncoding.EncodeToString(tp), priv: priv}
}

func (k *signingKey) publicJWK() jose.JSONWebKey {
	return jose.JSONWebKey{Key: &k.priv.PublicKey, KeyID: k.kid, Use: "sig", Algorithm: string(jose.RS256)}
}

func (p *Provider) currentKey() *signingKey {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.key
}

func (p *Provider) handleJWKS(w http.ResponseWriter, r *http.Request) {
	p.count(func(s *Stats) { s.JWKS++ })
	if !allowMethods(w, r, http.MethodGet, http.MethodHead) {
		return
	}
	set := jose.JSONWebKeySet{Keys: []jose.JSONWebKey{p.currentKey().publicJWK()}}
	b, err := json.Marshal(set)
	if err != nil {
		writeError(w, http.StatusInternalServerError, "server_error", err.Error())
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "no-cache")
	_, _ = w.Write(b)
}

// RotateKeys replaces the signing key with a new one with a new kid. The old
// key is removed from the JWKS; it is still accepted for id_token_hint at
// the end-session endpoint.
func (p *Provider) RotateKeys() {
	k := newSigningKey()
	p.mu.Lock()
	defer p.mu.Unlock()
	p.retired = append(p.retired, p.key)
	p.key = k
}

// SignJWT signs claims as a compact JWS with the current key, so tests can
// craft tokens. The header starts as {"alg":"RS256","typ":"JWT","kid":<current
// kid>}; entries of header are merged over it, and a nil value removes an
// entry. The "alg" entry selects the signature:
//
//   - "none": no signature (an unsecured JWT, with an empty third part);
//   - "HS256": HMAC-SHA256 keyed with the DER (PKIX) encoding of the current
//     public key, the classic algorithm-confusion attack;
//   - anything else: an RS256 signature, whatever "alg" claims.
//
// It panics if claims or header cannot be encoded as JSON.
func (p *Provider) SignJWT(claims map[string]any, header map[string]any) string {
	k := p.currentKey()
	h := map[string]any{"alg": "RS256", "typ": "JWT", "kid": k.kid}
	for name, v := range header {
		if v == nil {
			delete(h, name)
		} else {
			h[name] = v
		}
	}
	return signToken(k, h, claims)
}

// SignWithForeignKey returns a valid-looking RS256 JWT signed by a key that is
// not in the JWKS. Its header carries the current kid, so a relying party that
// selects keys by kid finds a key and must reject the signature.
func (p *Provider) SignWithForeignKey(claims map[string]any) string {
	p.foreignOnce.Do(func() { p.foreign = newSigningKey() })
	h := map[string]any{"alg": "RS256", "typ": "JWT", "kid": p.currentKey().kid}
	return signToken(p.foreign, h, claims)
}

// signToken encodes and signs a JWT with key according to header["alg"] (see
// SignJWT). The header is used exactly as given.
func signToken(key *signingKey, header, claims map[string]any) string {
	hb, err := json.Marshal(header)
	if err != nil {
		panic("devop: encoding JWT header: " + err.Error())
	}
	cb, err := json.Marshal(claims)
	if err != nil {
		panic("devop: encoding JWT claims: " + err.Error())
	}
	input := b64(hb) + "." + b64(cb)
	alg, _ := header["alg"].(string)
	var sig []byte
	switch alg {
	case "none":
	case "HS256":
		der, err := x509.MarshalPKIXPublicKey(&key.priv.PublicKey)
		if err != nil {
			panic("devop: " + err.Error())
		}
		mac := hmac.New(sha256.New, der)
		mac.Write([]byte(input))
		sig = mac.Sum(nil)
	default:
		sum := sha256.Sum256([]byte(input))
		sig, err = rsa.SignPKCS1v15(nil, key.priv, crypto.SHA256, sum[:])
		if err != nil {
			panic("devop: signing: " + err.Error())
		}
	}
	return input + "." + b64(sig)
}

func b64(b []byte) string { return base64.RawURLEncoding.EncodeToString(b) }

// verifyOwnToken checks that tok is an RS256 JWT signed by the current or a
// retired key and issued by this provider. Expiry is not checked. It returns
// the claims.
func (p *Provider) verifyOwnToken(tok string) (map[string]any, error) {
	parts := strings.Split(tok, ".")
	if len(parts) != 3 {
		return nil, errors.New("not a compact JWS")
	}
	hb, err1 := base64.RawURLEncoding.DecodeString(parts[0])
	cb, err2 := base64.RawURLEncoding.DecodeString(parts[1])
	sig, err3 := base64.RawURLEncoding.DecodeString(parts[2])
	if err := errors.Join(err1, err2, err3); err != nil {
		return nil, fmt.Errorf("bad encoding: %w", err)
	}
	var header struct {
		Alg string `json:"alg"`
		Kid string `json:"kid"`
	}
	if err := json.Unmarshal(hb, &header); err != nil {
		return nil, fmt.Errorf("bad header: %w", err)
	}
	if header.Alg != "RS256" {
		return nil, fmt.Errorf("unexpected alg %q", header.Alg)
	}
	p.mu.Lock()
	keys := append([]*signingKey{p.key}, p.retired...)
	issuer := p.issuer
	p.mu.Unlock()
	sum := sha256.Sum256([]byte(parts[0] + "." + parts[1]))
	verified := false
	for _, k := range keys {
		if header.Kid != "" && header.Kid != k.kid {
			continue
		}
		if rsa.VerifyPKCS1v15(&k.priv.PublicKey, crypto.SHA256, sum[:], sig) == nil {
			verified = true
			break
		}
	}
	if !verified {
		return nil, errors.New("signature not made by this provider")
	}
	dec := json.NewDecoder(bytes.NewReader(cb))
	dec.UseNumber()
	var claims map[string]any
	if err := dec.Decode(&claims); err != nil || claims == nil {
		return nil, errors.New("claims are not a JSON object")
	}
	if iss, _ := claims["iss"].(string); iss != issuer {
		return nil, fmt.Errorf("issued by %q, not by this provider", iss)
	}
	return claims, nil
}

// atHash computes the at_hash claim for an RS256 ID token.
func atHash(accessToken string) string {
	sum := sha256.Sum256([]byte(accessToken))
	return b64(sum[:len(sum)/2])
}
