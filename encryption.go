package oidcrp

// Encrypted and signed responses (OIDC Core §10.2, §5.3.2; OIDC DCR §2):
// ID tokens the provider encrypts to the relying party's keys (keys.go,
// registered by keypublish.go), and userinfo responses it signs, encrypts,
// or both, as application/jwt. What the registration asks for is required:
// a plain response where an encrypted or signed one was registered may have
// been swapped, and is refused.

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"mime"
	"net/http"
	"slices"
	"strings"

	"github.com/coreos/go-oidc/v3/oidc"
	"github.com/go-jose/go-jose/v4"
	"golang.org/x/oauth2"
)

// defaultEncryptionEnc is the content encryption of a response whose
// registration names an alg but no enc (OIDC DCR §2).
const defaultEncryptionEnc = "A128CBC-HS256"

// encryption returns the key management algorithm and content encryption
// registered for the responses named by what ("id_token" or "userinfo"),
// or "" and "" when they are not to be encrypted.
func (c *client) encryption(what string) (alg, enc string) {
	alg, _ = c.creds.Metadata.Extra[what+"_encrypted_response_alg"].(string)
	if alg == "" {
		return "", ""
	}
	enc, _ = c.creds.Metadata.Extra[what+"_encrypted_response_enc"].(string)
	if enc == "" {
		enc = defaultEncryptionEnc
	}
	return alg, enc
}

// isJWE reports whether raw has the five parts of a compact JWE
// (RFC 7516 §7.1), as opposed to the three of a JWS.
func isJWE(raw string) bool { return strings.Count(raw, ".") == 4 }

// signedIDToken returns the signed ID token that raw carries: raw itself
// when the registration asks for no encryption, else the nested JWS raw
// encrypts, which go-oidc then verifies as a plain ID token. A plain token
// where encryption was registered, and an encrypted one where it was not,
// are refused.
func (c *client) signedIDToken(raw string) (string, error) {
	alg, _ := c.encryption("id_token")
	switch {
	case alg == "" && isJWE(raw):
		return "", refusal(ReasonInvalidIDToken, "ID token is encrypted, but the registration asks for no encryption")
	case alg == "":
		return raw, nil
	case !isJWE(raw):
		return "", refusal(ReasonInvalidIDToken, fmt.Sprintf("ID token is not encrypted, though the registration asks for %s encryption", alg))
	}
	inner, err := c.decrypt("id_token", raw)
	if err != nil {
		return "", &AuthError{Reason: ReasonInvalidIDToken, Err: fmt.Errorf("encrypted ID token: %w", err)}
	}
	return string(inner), nil
}

// decrypt opens the compact JWE raw, encrypted as registered for what,
// with the relying party's key its header names (kid), or else with each
// of its keys for the algorithm in turn. Retired keys are tried too: a
// response encrypted to one may still arrive.
func (c *client) decrypt(what, raw string) ([]byte, error) {
	alg, enc := c.encryption(what)
	jwe, err := jose.ParseEncryptedCompact(raw, []jose.KeyAlgorithm{jose.KeyAlgorithm(alg)}, []jose.ContentEncryption{jose.ContentEncryption(enc)})
	if err != nil {
		return nil, fmt.Errorf("oidcrp: not a JWE encrypted with %s and %s as registered: %w", alg, enc, err)
	}
	kid := jwe.Header.KeyID
	tried := 0
	for _, k := range c.keys.decryptionKeys() {
		if k.alg != alg || (kid != "" && k.kid != kid) {
			continue
		}
		tried++
		if pt, err := jwe.Decrypt(k.priv); err == nil {
			return pt, nil
		}
	}
	switch {
	case tried == 0 && kid != "":
		return nil, fmt.Errorf("oidcrp: encrypted to key %q, which is not one of the relying party's %s keys", truncate(kid, 100), alg)
	case tried == 0:
		return nil, fmt.Errorf("oidcrp: the relying party has no %s key to decrypt with", alg)
	}
	return nil, errors.New("oidcrp: decryption failed with the relying party's keys (encrypted to another key, or altered)")
}

// jwtUserInfo reports whether the registration asks for userinfo
// responses signed or encrypted, which come as application/jwt.
func (c *client) jwtUserInfo() bool {
	alg, _ := c.encryption("userinfo")
	sig := c.creds.Metadata.UserinfoSignedResponseAlg
	return alg != "" || (sig != "" && sig != "none")
}

// userInfo reads the claims of the userinfo endpoint with tok, through
// go-oidc for plain JSON, and as registered for signed or encrypted
// responses: decrypted with the relying party's keys, and verified with
// the provider's (OIDC Core §5.3.2). With key, the request carries a DPoP
// proof (dpop.go).
func (rp *RP) userInfo(ctx context.Context, c *client, tok *oauth2.Token, key *dpopKey) ([]byte, error) {
	if !c.jwtUserInfo() {
		ui, err := c.provider.UserInfo(rp.providerContext(ctx, c, key), oauth2.StaticTokenSource(tok))
		if err != nil {
			return nil, err
		}
		var raw json.RawMessage
		if err := ui.Claims(&raw); err != nil {
			return nil, err
		}
		return raw, nil
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.disc.UserinfoEndpoint, nil)
	if err != nil {
		return nil, err
	}
	tok.SetAuthHeader(req)
	req.Header.Set("Accept", "application/jwt")
	hc := c.http
	if key != nil {
		hc = rp.dpopHTTPClient(c.http, key)
	}
	resp, err := hc.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxResponseBytes))
	if err != nil {
		return nil, err
	}
	if resp.StatusCode != http.StatusOK {
		return nil, fmt.Errorf("oidcrp: userinfo answered HTTP %d: %s", resp.StatusCode, truncate(string(body), 200))
	}
	if mt, _, _ := mime.ParseMediaType(resp.Header.Get("Content-Type")); mt != "application/jwt" {
		return nil, fmt.Errorf("oidcrp: userinfo answered %q, not application/jwt, though the registration asks for it signed or encrypted", truncate(resp.Header.Get("Content-Type"), 100))
	}
	return c.openUserInfo(ctx, string(bytes.TrimSpace(body)))
}

// openUserInfo returns the claims of an application/jwt userinfo
// response: decrypted when the registration asks for encryption, and
// verified when it asks for a signature, or when the decrypted content is
// a JWS. A signed response's iss and aud, when present, must be the
// provider and the client.
func (c *client) openUserInfo(ctx context.Context, body string) ([]byte, error) {
	encAlg, _ := c.encryption("userinfo")
	sigAlg := c.creds.Metadata.UserinfoSignedResponseAlg
	if sigAlg == "none" {
		sigAlg = "" // unsigned: the claims as JSON
	}
	content := []byte(body)
	switch {
	case encAlg != "" && !isJWE(body):
		return nil, fmt.Errorf("oidcrp: userinfo response is not encrypted, though the registration asks for %s encryption", encAlg)
	case encAlg == "" && isJWE(body):
		return nil, errors.New("oidcrp: userinfo response is encrypted, but the registration asks for no encryption")
	case encAlg != "":
		pt, err := c.decrypt("userinfo", body)
		if err != nil {
			return nil, fmt.Errorf("oidcrp: encrypted userinfo: %w", err)
		}
		content = bytes.TrimSpace(pt)
	}
	if sigAlg == "" && bytes.HasPrefix(content, []byte("{")) {
		return content, nil // encrypted only: the claims as JSON (OIDC DCR §2)
	}
	if sigAlg == "" {
		sigAlg = c.idTokenAlg() // a signed response nonetheless: as the ID tokens are
	}
	// go-oidc verifies the signature with the provider's keys, cached with
	// those of the ID tokens; the checks of ID tokens do not apply.
	v := c.provider.Verifier(&oidc.Config{
		SupportedSigningAlgs: []string{sigAlg},
		SkipClientIDCheck:    true,
		SkipExpiryCheck:      true,
		SkipIssuerCheck:      true,
	})
	t, err := v.Verify(ctx, string(content))
	if err != nil {
		return nil, fmt.Errorf("oidcrp: signed userinfo: %w", err)
	}
	switch {
	case t.Issuer != "" && t.Issuer != c.disc.Issuer:
		return nil, fmt.Errorf("oidcrp: signed userinfo issued by %q, not by %q", truncate(t.Issuer, 200), c.disc.Issuer)
	case len(t.Audience) > 0 && !slices.Contains(t.Audience, c.creds.ClientID):
		return nil, fmt.Errorf("oidcrp: signed userinfo is for another audience %q", t.Audience)
	}
	var raw json.RawMessage
	if err := t.Claims(&raw); err != nil {
		return nil, err
	}
	return raw, nil
}

// idTokenAlg is the algorithm the client's ID tokens are signed with.
func (c *client) idTokenAlg() string {
	if alg := c.creds.Metadata.IDTokenSignedResponseAlg; alg != "" && alg != "none" {
		return alg
	}
	return oidc.RS256 // OIDC DCR §2 default; unsigned ID tokens are never accepted
}
