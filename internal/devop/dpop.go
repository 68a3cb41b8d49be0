package devop

import (
	"crypto"
	"crypto/sha256"
	"encoding/json"
	"errors"
	"net/http"
	"strings"
	"time"

	"github.com/go-jose/go-jose/v4"
)

// errNeedNonce is the verdict on a proof without the current nonce
// (Options.DPoPNonce).
var errNeedNonce = errors.New("a DPoP nonce is required")

// dpopNonceLocked returns the current nonce, making the first. Callers
// hold p.mu.
func (p *Provider) dpopNonceLocked() string {
	if p.dpopNonce == "" {
		p.dpopNonce = randomToken(16)
	}
	return p.dpopNonce
}

// verifyDPoP checks the request's DPoP proof (RFC 9449 §4.3), minimally:
// one proof, typ dpop+jwt, ES256 signed by the public jwk of its header,
// htm and htu of this request, iat within a minute, ath of accessToken when
// one is given, and the current nonce with Options.DPoPNonce. It returns
// the thumbprint of the proof's key, or "" when there is no proof.
func (p *Provider) verifyDPoP(r *http.Request, accessToken string) (string, error) {
	proofs := r.Header.Values("DPoP")
	if len(proofs) == 0 {
		return "", nil
	}
	if len(proofs) > 1 {
		return "", errors.New("more than one DPoP header")
	}
	jws, err := jose.ParseSignedCompact(proofs[0], []jose.SignatureAlgorithm{jose.ES256})
	if err != nil || len(jws.Signatures) != 1 {
		return "", errors.New("the DPoP proof is not an ES256 JWS")
	}
	h := jws.Signatures[0].Header
	if typ, _ := h.ExtraHeaders[jose.HeaderType].(string); typ != "dpop+jwt" {
		return "", errors.New("the DPoP proof's typ is not dpop+jwt")
	}
	if h.JSONWebKey == nil || !h.JSONWebKey.IsPublic() || !h.JSONWebKey.Valid() {
		return "", errors.New("the DPoP proof has no public jwk")
	}
	payload, err := jws.Verify(h.JSONWebKey)
	if err != nil {
		return "", errors.New("the DPoP proof's signature does not verify")
	}
	var c struct {
		JTI   string `json:"jti"`
		HTM   string `json:"htm"`
		HTU   string `json:"htu"`
		IAT   int64  `json:"iat"`
		Nonce string `json:"nonce"`
		ATH   string `json:"ath"`
	}
	if err := json.Unmarshal(payload, &c); err != nil {
		return "", errors.New("the DPoP proof's claims are malformed")
	}
	scheme := "http"
	if r.TLS != nil {
		scheme = "https"
	}
	now := p.now()
	switch iat := time.Unix(c.IAT, 0); {
	case c.JTI == "":
		return "", errors.New("the DPoP proof has no jti")
	case c.HTM != r.Method:
		return "", errors.New("the DPoP proof's htm is not the request's method")
	case c.HTU != scheme+"://"+r.Host+r.URL.Path:
		return "", errors.New("the DPoP proof's htu is not the request's URL")
	case iat.Before(now.Add(-time.Minute)) || iat.After(now.Add(time.Minute)):
		return "", errors.New("the DPoP proof's iat is not within a minute of now")
	}
	if accessToken != "" {
		sum := sha256.Sum256([]byte(accessToken))
		if c.ATH != b64(sum[:]) {
			return "", errors.New("the DPoP proof's ath is not the access token's hash")
		}
	}
	p.mu.Lock()
	if p.opts.DPoPNonce && c.Nonce != p.dpopNonceLocked() {
		p.stats.DPoPNonceChallenges++
		p.mu.Unlock()
		return "", errNeedNonce
	}
	p.stats.DPoPProofs++
	p.mu.Unlock()
	tp, err := h.JSONWebKey.Thumbprint(crypto.SHA256)
	if err != nil {
		return "", err
	}
	return b64(tp), nil
}

// dpopNonceHeader sets the DPoP-Nonce header with Options.DPoPNonce.
func (p *Provider) dpopNonceHeader(w http.ResponseWriter) {
	if !p.opts.DPoP || !p.opts.DPoPNonce {
		return
	}
	p.mu.Lock()
	n := p.dpopNonceLocked()
	p.mu.Unlock()
	w.Header().Set("DPoP-Nonce", n)
}

// tokenDPoP checks a token request's proof: it returns the thumbprint to
// bind the tokens to, or the error to answer.
func (p *Provider) tokenDPoP(w http.ResponseWriter, r *http.Request) (string, *tokenError) {
	if !p.opts.DPoP {
		return "", nil
	}
	p.dpopNonceHeader(w)
	jkt, err := p.verifyDPoP(r, "")
	switch {
	case errors.Is(err, errNeedNonce):
		return "", &tokenError{http.StatusBadRequest, "use_dpop_nonce", "a DPoP nonce is required (DPoP-Nonce)"}
	case err != nil:
		return "", &tokenError{http.StatusBadRequest, "invalid_dpop_proof", err.Error()}
	}
	return jkt, nil
}

// resourceToken reads the access token of a resource request, either
// scheme, and the scheme.
func resourceToken(r *http.Request) (token string, dpop bool, ok bool) {
	scheme, tok, found := strings.Cut(r.Header.Get("Authorization"), " ")
	tok = strings.TrimSpace(tok)
	switch {
	case !found || tok == "":
		return "", false, false
	case strings.EqualFold(scheme, "Bearer"):
		return tok, false, true
	case strings.EqualFold(scheme, "DPoP"):
		return tok, true, true
	}
	return "", false, false
}
