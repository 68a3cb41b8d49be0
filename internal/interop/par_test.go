package interop_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/internal/interop"
)

// ---------------------------------------------------------------------------
// Pushed authorization requests (RFC 9126) at a provider that requires them:
// the login pushes its request, authenticated as at the token endpoint (with
// a private_key_jwt assertion, the default at this provider), the
// browser reaches the authorization endpoint with only client_id and
// request_uri, and the tokens refresh as usual.

func TestRPPushedAuthorizationRequired(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{RequirePAR: true, IDTokenTTL: 3 * time.Second, AccessTokenTTL: 3 * time.Second})
	a := newApp(t, op, func(c *oidcrp.Config) { c.KeepTokens = true })
	if a.disc["require_pushed_authorization_requests"] != true {
		t.Fatalf("the provider does not require PAR: %v", a.disc)
	}
	b := newBrowser(t)
	p := b.navigate(a.URL + "/dash")
	a.expectSignedIn(p, "/dash")
	a.expectLoginTrip(p)
	clientID := a.rp.Status().ClientID

	// The browser's authorization request: client_id and request_uri only.
	authz := a.endpoint("authorization_endpoint") + "?"
	for _, h := range p.hops {
		if !strings.HasPrefix(h, authz) {
			continue
		}
		u, _ := url.Parse(h)
		q := u.Query()
		if len(q) != 2 || q.Get("client_id") != clientID || !strings.HasPrefix(q.Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
			t.Errorf("authorization request %s, want only client_id and request_uri", h)
		}
	}

	// The pushed request: every parameter, a client assertion as at the token endpoint.
	pushed := a.rec.find(http.MethodPost, a.endpoint("pushed_authorization_request_endpoint"))
	if len(pushed) != 1 || pushed[0].status != http.StatusCreated {
		t.Fatalf("%d PAR requests (%v), want one answered 201", len(pushed), pushed)
	}
	form := pushed[0].form()
	for _, k := range []string{"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method"} {
		if form.Get(k) == "" {
			t.Errorf("the pushed request lacks %s", k)
		}
	}
	if m := a.rp.Status().AuthMethod; m != "private_key_jwt" {
		t.Fatalf("Status().AuthMethod = %q, want private_key_jwt", m)
	}
	ex := a.codeExchanges()
	if len(ex) != 1 {
		t.Fatalf("%d code exchanges, want 1", len(ex))
	}
	for _, c := range []providerCall{pushed[0], ex[0]} {
		f := c.form()
		if f.Get("client_assertion_type") != "urn:ietf:params:oauth:client-assertion-type:jwt-bearer" || f.Get("client_assertion") == "" ||
			f.Get("client_id") != clientID || f.Has("client_secret") || c.header.Get("Authorization") != "" {
			t.Errorf("%s is not authenticated with a client assertion alone as client %s", c.url, clientID)
		}
	}
	if pushed[0].form().Get("client_assertion") == ex[0].form().Get("client_assertion") {
		t.Errorf("the PAR and token requests carry the same client assertion, want one each")
	}
	// The provider confirms it.
	logs := op.LogsWith("client_assertion: route=token client="+clientID, 1)
	if strings.Count(logs, "pushed_authorization_request.success: client="+clientID) != 1 {
		t.Errorf("the provider did not log one accepted pushed request from %s:\n%s", clientID, logs)
	}
	for _, route := range []string{"pushed_authorization_request", "token"} {
		if !strings.Contains(logs, "client_assertion: route="+route+" client="+clientID+" alg=ES256") {
			t.Errorf("the provider did not verify a client assertion at the %s endpoint:\n%s", route, logs)
		}
	}
	if strings.Contains(logs, "pushed_authorization_request.error") || strings.Contains(logs, "authorization.error") {
		t.Errorf("the provider logged an error:\n%s", logs)
	}

	// Refresh: an API request after the tokens expired still succeeds.
	exp, _ := jwtPart(t, a.lastIDToken(), 1)["exp"].(float64)
	sleepUntil(t, time.Unix(int64(exp), 0).Add(200*time.Millisecond), "until the ID token and access token expire")
	api := b.api(a.URL + "/api")
	if api.status != http.StatusOK || !strings.Contains(api.body, `"sub":"`+interop.TestUserSub+`"`) {
		t.Fatalf("API request after expiry: status %d %.200s", api.status, api.body)
	}
	var refreshes int
	for _, c := range a.rec.find(http.MethodPost, a.endpoint("token_endpoint")) {
		if c.form().Get("grant_type") == "refresh_token" && c.status == http.StatusOK {
			refreshes++
		}
	}
	if refreshes != 1 || len(a.codeExchanges()) != 1 {
		t.Errorf("%d refreshes and %d code exchanges, want 1 and 1", refreshes, len(a.codeExchanges()))
	}
}

// TestRPPushedAuthorizationNotRequired: oidc-provider offers PAR by
// default without requiring it; the RP then sends ordinary authorization
// requests unless configured to push them.
func TestRPPushedAuthorizationNotRequired(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{})
	plain := newApp(t, op, nil)
	if plain.disc["pushed_authorization_request_endpoint"] == nil {
		t.Skip("this oidc-provider does not offer PAR")
	}
	plain.expectSignedIn(newBrowser(t).navigate(plain.URL+"/"), "/")
	if n := len(plain.rec.find(http.MethodPost, plain.endpoint("pushed_authorization_request_endpoint"))); n != 0 {
		t.Errorf("%d PAR requests to a provider that does not require them", n)
	}
	pushing := newApp(t, op, func(c *oidcrp.Config) { c.PushedAuthorization = true; c.SessionName = "oidcrp_pushing" })
	pushing.expectSignedIn(newBrowser(t).navigate(pushing.URL+"/"), "/")
	if n := len(pushing.rec.find(http.MethodPost, pushing.endpoint("pushed_authorization_request_endpoint"))); n != 1 {
		t.Errorf("%d PAR requests with Config.PushedAuthorization, want 1", n)
	}
	if pushed := "pushed_authorization_request.success: client=" + pushing.rp.Status().ClientID; !strings.Contains(op.LogsWith(pushed, 1), pushed) {
		t.Errorf("the provider did not log the pushed request:\n%s", op.Logs())
	}
}
