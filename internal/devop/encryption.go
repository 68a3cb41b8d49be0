package devop

// Encrypted ID tokens and signed or encrypted userinfo responses (OpenID
// Connect Core §10.2 and §5.3.2, Dynamic Client Registration §2): a client
// that registered id_token_encrypted_response_alg gets its ID tokens
// signed, then encrypted to a key of its registered jwks (a nested JWT,
// cty "JWT"); one that registered userinfo_signed_response_alg or
// userinfo_encrypted_response_alg gets its userinfo as application/jwt.

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"

	jose "github.com/go-jose/go-jose/v4"
)

// Algorithms the provider encrypts and signs responses with, as advertised.
var (
	encryptionAlgs   = []string{"ECDH-ES", "RSA-OAEP-256", "RSA-OAEP"}
	encryptionEncs   = []string{"A256GCM", "A128CBC-HS256"}
	userinfoSignAlgs = []string{"RS256"}
)

// defaultEnc is the content encryption when a client registered an alg
// without an enc (OIDC DCR §2).
const defaultEnc = "A128CBC-HS256"

// advertiseEncryption adds the encryption and userinfo signing algorithms
// to the discovery document.
func advertiseEncryption(doc map[string]any) {
	for _, what := range []string{"id_token", "userinfo"} {
		doc[what+"_encryption_alg_values_supported"] = slices.Clone(encryptionAlgs)
		doc[what+"_encryption_enc_values_supported"] = slices.Clone(encryptionEncs)
	}
	doc["userinfo_signing_alg_values_supported"] = slices.Clone(userinfoSignAlgs)
}

// checkEncryptionMetadata validates the registered response signing and
// encryption: supported values, an enc only with its alg (OIDC DCR §2),
// and an inline jwks holding a key to encrypt to.
func checkEncryptionMetadata(all map[string]any) *metadataError {
	if v, present := all["userinfo_signed_response_alg"]; present {
		if s, _ := v.(string); !slices.Contains(userinfoSignAlgs, s) {
			return invalidMetadata("userinfo_signed_response_alg must be one of %q", userinfoSignAlgs)
		}
	}
	for _, what := range []string{"id_token", "userinfo"} {
		algKey, encKey := what+"_encrypted_response_alg", what+"_encrypted_response_enc"
		alg, hasAlg := all[algKey]
		enc, hasEnc := all[encKey]
		if hasEnc && !hasAlg {
			return invalidMetadata("%s requires %s", encKey, algKey)
		}
		if !hasAlg {
			continue
		}
		if s, _ := alg.(string); !slices.Contains(encryptionAlgs, s) {
			return invalidMetadata("%s must be one of %q", algKey, encryptionAlgs)
		}
		if s, _ := enc.(string); hasEnc && !slices.Contains(encryptionEncs, s) {
			return invalidMetadata("%s must be one of %q", encKey, encryptionEncs)
		}
		if _, err := encryptionKey(all, alg.(string), false); err != nil {
			return invalidMetadata("%s: %v", algKey, err)
		}
	}
	return nil
}

// encryption returns what the client registered for the responses named
// by what ("id_token" or "userinfo"): alg "" for no encryption.
func encryption(metadata map[string]any, what string) (alg, enc string) {
	alg, _ = metadata[what+"_encrypted_response_alg"].(string)
	if alg == "" {
		return "", ""
	}
	enc, _ = metadata[what+"_encrypted_response_enc"].(string)
	if enc == "" {
		enc = defaultEnc
	}
	return alg, enc
}

// encryptionKey returns the key of the client's registered jwks to
// encrypt to with alg: the first with use "enc" of the right type, else
// the first of the right type without a use, or with last, the last such
// key rather than the first.
func encryptionKey(metadata map[string]any, alg string, last bool) (jose.JSONWebKey, error) {
	raw, ok := metadata["jwks"]
	if !ok {
		return jose.JSONWebKey{}, errors.New("the provider encrypts only to keys registered inline (jwks)")
	}
	var set jose.JSONWebKeySet
	if b, err := json.Marshal(raw); err != nil || json.Unmarshal(b, &set) != nil {
		return jose.JSONWebKey{}, errors.New("the registered jwks is unusable")
	}
	fits := func(k jose.JSONWebKey) bool {
		if k.Algorithm != "" && k.Algorithm != alg {
			return false
		}
		switch k.Key.(type) {
		case *ecdsa.PublicKey:
			return alg == "ECDH-ES"
		case *rsa.PublicKey:
			return alg == "RSA-OAEP-256" || alg == "RSA-OAEP"
		}
		return false
	}
	var found []jose.JSONWebKey
	for _, use := range []string{"enc", ""} {
		for _, k := range set.Keys {
			if k.Use == use && fits(k) {
				found = append(found, k)
			}
		}
		if len(found) > 0 {
			break
		}
	}
	switch {
	case len(found) == 0:
		return jose.JSONWebKey{}, fmt.Errorf("the registered jwks has no key to encrypt to with %s", alg)
	case last:
		return found[len(found)-1], nil
	}
	return found[0], nil
}

// encryptFor encrypts content (a JWT when nested) to the client as it
// registered for what, or as the hostile options say.
func (p *Provider) encryptFor(metadata map[string]any, what string, content []byte, nested bool) (string, error) {
	alg, enc := encryption(metadata, what)
	key, err := encryptionKey(metadata, alg, p.opts.EncryptToLastKey)
	if err != nil {
		return "", err
	}
	if p.opts.EncryptionAlg != "" {
		alg = p.opts.EncryptionAlg // to the same key: it must be of the right type
	}
	if p.opts.EncryptionEnc != "" {
		enc = p.opts.EncryptionEnc
	}
	if p.opts.EncryptToForeignKey {
		key = foreignKey(key)
	}
	opts := &jose.EncrypterOptions{}
	if nested {
		opts = opts.WithContentType("JWT")
	}
	e, err := jose.NewEncrypter(jose.ContentEncryption(enc),
		jose.Recipient{Algorithm: jose.KeyAlgorithm(alg), Key: key.Key, KeyID: key.KeyID}, opts)
	if err != nil {
		return "", err
	}
	jwe, err := e.Encrypt(content)
	if err != nil {
		return "", err
	}
	return jwe.CompactSerialize()
}

// foreignKey returns a fresh public key of key's type under key's kid: a
// token encrypted to it names a key the client has, which cannot decrypt.
func foreignKey(key jose.JSONWebKey) jose.JSONWebKey {
	var pub any
	switch key.Key.(type) {
	case *ecdsa.PublicKey:
		priv, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
		if err != nil {
			panic("devop: " + err.Error())
		}
		pub = &priv.PublicKey
	default:
		priv, err := rsa.GenerateKey(rand.Reader, 2048)
		if err != nil {
			panic("devop: " + err.Error())
		}
		pub = &priv.PublicKey
	}
	return jose.JSONWebKey{Key: pub, KeyID: key.KeyID, Algorithm: key.Algorithm, Use: key.Use}
}

// wrapIDToken encrypts a signed ID token for a client that registered
// id_token_encrypted_response_alg, unless [Options.PlainResponses].
func (p *Provider) wrapIDToken(c client, signed string) (string, error) {
	if alg, _ := encryption(c.metadata, "id_token"); alg == "" || p.opts.PlainResponses {
		return signed, nil
	}
	return p.encryptFor(c.metadata, "id_token", []byte(signed), true)
}

// writeUserInfo answers claims as JSON, or as application/jwt for a client
// that registered signing or encryption: signed with the provider's key
// (with iss and aud, unless the UserInfo hook set them) and/or encrypted to the client's key.
func (p *Provider) writeUserInfo(w http.ResponseWriter, metadata map[string]any, clientID string, claims map[string]any) {
	sigAlg, _ := metadata["userinfo_signed_response_alg"].(string)
	encAlg, _ := encryption(metadata, "userinfo")
	if (sigAlg == "" && encAlg == "") || p.opts.PlainResponses {
		writeJSON(w, http.StatusOK, claims)
		return
	}
	var content []byte
	if sigAlg != "" {
		if _, ok := claims["iss"]; !ok { // the UserInfo hook may have set others
			claims["iss"] = p.Issuer()
		}
		if _, ok := claims["aud"]; !ok {
			claims["aud"] = clientID
		}
		k := p.currentKey()
		content = []byte(signToken(k, map[string]any{"alg": "RS256", "typ": "JWT", "kid": k.kid}, claims))
	} else {
		b, err := json.Marshal(claims)
		if err != nil {
			writeError(w, http.StatusInternalServerError, "server_error", err.Error())
			return
		}
		content = b
	}
	if encAlg != "" {
		jwe, err := p.encryptFor(metadata, "userinfo", content, sigAlg != "")
		if err != nil {
			writeError(w, http.StatusInternalServerError, "server_error", "encrypting userinfo: "+err.Error())
			return
		}
		content = []byte(jwe)
	}
	w.Header().Set("Content-Type", "application/jwt")
	w.Header().Set("Cache-Control", "no-store")
	_, _ = w.Write(content)
}
