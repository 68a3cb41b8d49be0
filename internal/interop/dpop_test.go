package interop_test

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/internal/interop"
)

// ---------------------------------------------------------------------------
// DPoP (RFC 9449) at a provider that requires its nonce in proofs: the RP
// registers for bound tokens, names its key in the authorization request
// (dpop_jkt, in the pushed request), answers the nonce challenge at the
// token endpoint, gets a DPoP-bound access token, calls userinfo through
// the user's client with it, and refreshes with a proof.

func TestRPDPoP(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{DPoPNonce: true, RequirePAR: true, IDTokenTTL: 3 * time.Second, AccessTokenTTL: 3 * time.Second})
	a := newApp(t, op, func(c *oidcrp.Config) { c.KeepTokens, c.DPoP = true, true })
	if a.disc["dpop_signing_alg_values_supported"] == nil {
		t.Fatalf("the provider does not advertise DPoP: %v", a.disc)
	}
	b := newBrowser(t)
	p := b.navigate(a.URL + "/dash")
	a.expectSignedIn(p, "/dash")
	clientID := a.rp.Status().ClientID

	if reg := a.registrations(); len(reg) != 1 || !strings.Contains(reg[0].body, `"dpop_bound_access_tokens":true`) {
		t.Fatalf("the registration does not ask for DPoP-bound tokens: %v", reg)
	}
	pushed := a.rec.find(http.MethodPost, a.endpoint("pushed_authorization_request_endpoint"))
	if len(pushed) != 1 || len(pushed[0].form().Get("dpop_jkt")) != 43 {
		t.Fatalf("the pushed request has no dpop_jkt: %v", pushed)
	}

	// The code exchange: challenged for a nonce once, then accepted.
	ex := a.codeExchanges()
	if len(ex) != 2 || ex[0].status != http.StatusBadRequest || !strings.Contains(ex[0].respBody, "use_dpop_nonce") ||
		ex[1].status != http.StatusOK || ex[0].header.Get("DPoP") == "" || ex[1].header.Get("DPoP") == "" {
		for _, c := range ex {
			t.Logf("exchange: %d %s", c.status, c.respBody)
		}
		t.Fatalf("%d code exchanges, want a use_dpop_nonce challenge and a success, both with proofs", len(ex))
	}
	nonce := jwtPart(t, ex[1].header.Get("DPoP"), 1)["nonce"]
	if nonce == nil || nonce == "" {
		t.Error("the retried proof carries no nonce")
	}
	var tok struct {
		TokenType string `json:"token_type"`
	}
	if json.Unmarshal([]byte(ex[1].respBody), &tok); tok.TokenType != "DPoP" {
		t.Fatalf("token_type %q, want DPoP", tok.TokenType)
	}
	// The callback's userinfo request: a bound token, with a proof.
	ui := a.rec.find(http.MethodGet, a.endpoint("userinfo_endpoint"))
	if len(ui) == 0 || ui[len(ui)-1].status != http.StatusOK || !strings.HasPrefix(ui[len(ui)-1].header.Get("Authorization"), "DPoP ") ||
		jwtPart(t, ui[len(ui)-1].header.Get("DPoP"), 1)["ath"] == nil {
		t.Fatalf("userinfo at login: %v", ui)
	}

	// A downstream call through the user's client.
	call := func(when string) {
		t.Helper()
		api := b.api(a.URL + "/api?userinfo=1")
		var v userView
		if api.status != http.StatusOK || json.Unmarshal([]byte(api.body), &v) != nil || v.UserInfo == nil ||
			v.UserInfo.Status != http.StatusOK || !strings.Contains(v.UserInfo.Body, `"sub":"`+interop.TestUserSub+`"`) {
			t.Fatalf("%s: the downstream userinfo call failed: status %d %.300s", when, api.status, api.body)
		}
		last := a.rec.find(http.MethodGet, a.endpoint("userinfo_endpoint"))
		if h := last[len(last)-1].header; !strings.HasPrefix(h.Get("Authorization"), "DPoP ") || h.Get("DPoP") == "" {
			t.Fatalf("%s: the downstream call was not made with a DPoP-bound token and a proof", when)
		}
	}
	call("after login")

	// Refresh: after the tokens expired, the refresh carries a proof and the
	// new access token is bound too.
	exp, _ := jwtPart(t, a.lastIDToken(), 1)["exp"].(float64)
	sleepUntil(t, time.Unix(int64(exp), 0).Add(200*time.Millisecond), "until the ID token and access token expire")
	call("after refresh")
	var refreshes int
	for _, c := range a.rec.find(http.MethodPost, a.endpoint("token_endpoint")) {
		if c.form().Get("grant_type") == "refresh_token" && c.status == http.StatusOK {
			if c.header.Get("DPoP") == "" || !strings.Contains(c.respBody, `"token_type":"DPoP"`) {
				t.Errorf("refresh without a proof, or with an unbound token: %.200s", c.respBody)
			}
			refreshes++
		}
	}
	if refreshes != 1 {
		t.Errorf("%d refreshes, want 1", refreshes)
	}

	// The provider's events: PAR and DPoP-bound access tokens, no errors.
	logs := op.LogsWith("access_token.saved: client="+clientID+" dpop=bound", 2)
	if !strings.Contains(logs, "pushed_authorization_request.success: client="+clientID) {
		t.Errorf("the provider did not log the pushed request:\n%s", logs)
	}
	if n := strings.Count(logs, "access_token.saved: client="+clientID+" dpop=bound"); n != 2 ||
		strings.Contains(logs, "access_token.saved: client="+clientID+" dpop=none") {
		t.Errorf("the provider logged %d DPoP-bound access tokens, want 2 and no unbound one:\n%s", n, logs)
	}
	if strings.Contains(logs, "userinfo.error") || strings.Contains(logs, "authorization.error") {
		t.Errorf("the provider logged an error:\n%s", logs)
	}
}
