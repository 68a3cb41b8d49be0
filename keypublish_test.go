package oidcrp

import (
	"testing"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// TestEncryptedUserInfoIsSignedToo: asking for encrypted userinfo also
// asks for it signed (a nested JWT, OIDC Core §5.3.2), as the ID tokens
// are, which providers such as oidc-provider require; the login gets the
// userinfo claims out of it. ID tokens and userinfo are encrypted to one
// key.
func TestEncryptedUserInfoIsSignedToo(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{EncryptedResponses: true})
	out := e.login("/page") // fails unless the nested userinfo JWT is decrypted and verified
	m := e.op.Clients()[0].Metadata
	if m["userinfo_encrypted_response_alg"] == nil || m["userinfo_signed_response_alg"] != "RS256" {
		t.Errorf("registered userinfo encryption %v, signing %v; want both, signed with RS256", m["userinfo_encrypted_response_alg"], m["userinfo_signed_response_alg"])
	}
	if keys := registeredJWKS(t, e.op); len(keys) != 1 {
		t.Errorf("registered %d keys, want one encryption key for ID tokens and userinfo", len(keys))
	}
	if claims, _ := out["claims"].(map[string]any); claims["email"] == nil {
		t.Errorf("the claims %v lack the email", out["claims"])
	}
}
