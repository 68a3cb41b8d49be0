package devop

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// revoke posts form to the revocation endpoint authenticating as c, and
// returns the status.
func (e *env) revoke(c creds, form url.Values) int {
	e.t.Helper()
	form = cloneValues(form)
	if c.method == "client_secret_post" {
		form.Set("client_id", c.id)
		form.Set("client_secret", c.secret)
	}
	req, _ := http.NewRequest(http.MethodPost, e.url("/revoke"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.method == "client_secret_basic" {
		req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	}
	resp, _ := e.do(e.hc, req)
	return resp.StatusCode
}

func TestRevocation(t *testing.T) {
	e := newEnv(t, Options{AutoLogin: true}, "")
	_, b := e.get("/.well-known/openid-configuration")
	if doc := decodeJSON(t, b); doc["revocation_endpoint"] != e.url("/revoke") {
		t.Fatalf("revocation_endpoint %v", doc["revocation_endpoint"])
	}
	c := credsOf(e.register(clientMeta("client_secret_basic", map[string]any{
		"grant_types": []string{"authorization_code", "refresh_token"},
	})))
	code, verifier := e.codeFor(c.id, "n")
	_, tok := e.token(c, codeForm(code, verifier))
	rt, at := tok["refresh_token"].(string), tok["access_token"].(string)

	if s := e.revoke(creds{c.id, "wrong", c.method}, url.Values{"token": {rt}}); s != http.StatusUnauthorized {
		t.Errorf("wrong secret: %d, want 401", s)
	}
	if resp, _ := e.userinfo(at); resp.StatusCode != http.StatusOK {
		t.Fatalf("userinfo before revocation: %d", resp.StatusCode)
	}
	if s := e.revoke(c, url.Values{"token": {rt}, "token_type_hint": {"refresh_token"}}); s != http.StatusOK {
		t.Fatalf("revocation: %d", s)
	}
	// The grant is revoked: its access token too.
	if resp, _ := e.userinfo(at); resp.StatusCode != http.StatusUnauthorized {
		t.Errorf("access token after its refresh token was revoked: %d", resp.StatusCode)
	}
	resp, body := e.token(c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	wantError(t, resp, body, http.StatusBadRequest, "invalid_grant")
	if s := e.revoke(c, url.Values{"token": {"unknown"}}); s != http.StatusOK {
		t.Errorf("unknown token: %d, want 200 (RFC 7009 §2.2)", s)
	}
	if n := e.p.Stats().Revocation; n != 3 {
		t.Errorf("Stats.Revocation %d, want 3", n)
	}
}

func TestRevocationHookAndOption(t *testing.T) {
	e := newEnv(t, Options{Revocation: func(status *int) { *status = http.StatusServiceUnavailable }}, "")
	c := credsOf(e.register(clientMeta("client_secret_basic", nil)))
	if s := e.revoke(c, url.Values{"token": {"x"}}); s != http.StatusServiceUnavailable {
		t.Errorf("hooked status: %d", s)
	}
	e = newEnv(t, Options{NoRevocation: true}, "")
	if resp, _ := e.get("/revoke"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("NoRevocation: /revoke answers %d", resp.StatusCode)
	}
}
