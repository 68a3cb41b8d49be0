package interop_test

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/internal/interop"
)

// TestRPLogoutRevokesTokens: with KeepTokens, logout revokes the session's
// refresh and access tokens at oidc-provider's revocation endpoint (RFC
// 7009), which accepts the client's authentication.
func TestRPLogoutRevokesTokens(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{})
	a := newApp(t, op, func(c *oidcrp.Config) { c.KeepTokens = true })
	endpoint := a.endpoint("revocation_endpoint")
	b := newBrowser(t)
	a.expectSignedIn(b.navigate(a.URL+"/"), "/")
	req := b.request(http.MethodPost, a.URL+"/logout", strings.NewReader(""))
	req.Header.Set("Origin", a.URL)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if p := b.send(req); p.status != http.StatusSeeOther {
		t.Fatalf("POST /logout: status %d", p.status)
	}
	deadline := time.Now().Add(10 * time.Second)
	var calls []providerCall
	for {
		calls = a.rec.find(http.MethodPost, endpoint)
		if len(calls) >= 2 || time.Now().After(deadline) {
			break
		}
		time.Sleep(50 * time.Millisecond)
	}
	if len(calls) != 2 {
		t.Fatalf("%d revocation requests, want 2", len(calls))
	}
	for i, hint := range []string{"refresh_token", "access_token"} {
		if calls[i].status != http.StatusOK || calls[i].form().Get("token_type_hint") != hint || calls[i].form().Get("token") == "" {
			t.Errorf("revocation %d: status %d, form %v: %s", i, calls[i].status, calls[i].form(), calls[i].respBody)
		}
	}
}
