package devop

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
)

// TestPAR: with RequirePAR, discovery requires PAR and names the endpoint;
// a pushed request_uri stands for its parameters once, for the client that
// pushed it; requests that were not pushed are refused; the endpoint
// authenticates clients as the token endpoint does.
func TestPAR(t *testing.T) {
	e := newEnv(t, Options{AutoLogin: true, RequirePAR: true}, "")
	_, body := e.get("/.well-known/openid-configuration")
	doc := decodeJSON(t, body)
	if doc["pushed_authorization_request_endpoint"] != e.url("/par") || doc["require_pushed_authorization_requests"] != true {
		t.Fatalf("discovery: %v %v", doc["pushed_authorization_request_endpoint"], doc["require_pushed_authorization_requests"])
	}
	reg := e.register(clientMeta("client_secret_basic", nil))
	c := credsOf(reg)
	_, challenge := pkcePair()
	params := authParams(c.id, challenge, "st", "n")

	push := func(form url.Values, id, secret string) (int, map[string]any) {
		req, _ := http.NewRequest(http.MethodPost, e.url("/par"), strings.NewReader(form.Encode()))
		req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
		if id != "" {
			req.SetBasicAuth(url.QueryEscape(id), url.QueryEscape(secret))
		}
		resp, b := e.do(e.hc, req)
		return resp.StatusCode, decodeJSON(t, b)
	}
	if status, body := push(params, c.id, "wrong"); status != http.StatusUnauthorized || body["error"] != "invalid_client" {
		t.Errorf("wrong secret: %d %v", status, body)
	}
	status, pushed := push(params, c.id, c.secret)
	uri, _ := pushed["request_uri"].(string)
	if status != http.StatusCreated || !strings.HasPrefix(uri, parURNPrefix) || pushed["expires_in"] != float64(60) {
		t.Fatalf("push: %d %v", status, pushed)
	}

	// Not pushed: refused, back to the client.
	if q := e.callback(e.authorize(e.hc, params)); q.Get("error") != "invalid_request" || q.Get("state") != "st" {
		t.Errorf("a request that was not pushed: %v", q)
	}
	// Another client's client_id with the request_uri: refused.
	other := credsOf(e.register(clientMeta("client_secret_basic", nil)))
	if resp, _ := e.authorize(e.hc, url.Values{"client_id": {other.id}, "request_uri": {uri}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("request_uri with another client_id: %d", resp.StatusCode)
	}
	// That consumed it; a fresh one works once.
	_, pushed = push(params, c.id, c.secret)
	uri, _ = pushed["request_uri"].(string)
	q := e.callback(e.authorize(e.hc, url.Values{"client_id": {c.id}, "request_uri": {uri}}))
	if q.Get("code") == "" || q.Get("state") != "st" {
		t.Errorf("pushed request: %v", q)
	}
	if resp, _ := e.authorize(e.hc, url.Values{"client_id": {c.id}, "request_uri": {uri}}); resp.StatusCode != http.StatusBadRequest {
		t.Errorf("request_uri used twice: %d", resp.StatusCode)
	}
	if n := e.p.Stats().PAR; n != 3 {
		t.Errorf("Stats().PAR = %d, want 3", n)
	}
}
