package interop_test

import (
	"net/http"
	"strings"
	"testing"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/internal/interop"
)

// ---------------------------------------------------------------------------
// Back-channel logout: two relying parties signed in through one provider
// session; signing out at the first ends the provider session, and the
// provider's logout token ends the second's session.

func TestRPBackchannelLogoutAcrossRelyingParties(t *testing.T) {
	t.Parallel()
	op := interop.Start(t, interop.Options{BackchannelLogout: true})
	first := newApp(t, op, nil)
	// Both apps are on 127.0.0.1, where cookies do not depend on the
	// port: the second's session cookie needs another name.
	const secondCookie = "oidcrp_second"
	second := newApp(t, op, func(c *oidcrp.Config) { c.SessionName = secondCookie })
	b := newBrowser(t)

	first.expectSignedIn(b.navigate(first.URL+"/"), "/")
	p := b.navigate(second.URL + "/")
	second.expectSignedIn(p, "/")
	if p.passed(op.InteractionURLPrefix) && strings.Count(op.Logs(), "prompt=login") != 1 {
		t.Errorf("the second sign-in asked for a login again: one provider session is expected; hops %v", p.hops)
	}
	old := b.cookie(second.URL, secondCookie)
	if old == nil {
		t.Fatal("no session cookie at the second relying party")
	}
	if status := replay(t, second.URL+"/api", old); status != http.StatusOK {
		t.Fatalf("the second session before logout: status %d", status)
	}
	for _, a := range []*app{first, second} {
		meta, _ := a.stored()["metadata"].(map[string]any)
		if meta["backchannel_logout_uri"] != a.URL+"/backchannel-logout" || meta["backchannel_logout_session_required"] != true {
			t.Errorf("%s registered back-channel logout %v, session required %v", a.URL, meta["backchannel_logout_uri"], meta["backchannel_logout_session_required"])
		}
	}
	if sid := jwtPart(t, second.lastIDToken(), 1)["sid"]; sid == nil {
		t.Error("the provider put no sid in the second's ID token")
	}

	// Sign out at the first: RP-initiated logout, confirmed at the provider.
	logoutChecksAt(t, first, b)

	// The provider POSTed a logout token to the second before it answered
	// the browser.
	if delivered := "backchannel.success: client=" + second.rp.Status().ClientID; !strings.Contains(op.LogsWith(delivered, 1), delivered) {
		t.Fatalf("the provider did not deliver a logout token to the second relying party; provider log:\n%s", op.Logs())
	}
	if strings.Contains(op.Logs(), "backchannel.error") {
		t.Errorf("a back-channel logout failed; provider log:\n%s", op.Logs())
	}
	if status := replay(t, second.URL+"/api", old); status != http.StatusUnauthorized {
		t.Errorf("the second session after the logout at the first: status %d, want 401", status)
	}
	if second.logCount("back-channel logout ended the provider session's sessions") != 1 {
		t.Errorf("the second relying party did not log the back-channel logout")
	}
	if n := second.calls.Load(); n == 0 {
		t.Fatal("no request reached the second's handler")
	}
	// The browser, at the second, is sent to sign in again.
	if p := b.api(second.URL + "/api"); p.status != http.StatusUnauthorized {
		t.Errorf("the browser at the second after the logout: status %d, want 401", p.status)
	}
}

// logoutChecksAt signs the browser out at a through POST /logout, following
// the provider's confirmation back to a's signed-out page.
func logoutChecksAt(t *testing.T, a *app, b *browser) {
	t.Helper()
	req := b.request(http.MethodPost, a.URL+"/logout", strings.NewReader(""))
	req.Header.Set("Origin", a.URL)
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	first := b.send(req)
	if first.status != http.StatusSeeOther {
		t.Fatalf("POST /logout: status %d, want 303: %.300s", first.status, first.body)
	}
	loc := first.header.Get("Location")
	if !strings.HasPrefix(loc, a.endpoint("end_session_endpoint")+"?") {
		t.Fatalf("logout redirect to %s, want the end_session_endpoint", loc)
	}
	p := b.navigate(loc)
	if p.status != http.StatusOK || !strings.HasPrefix(p.url, a.URL+"/logout?state=") || !strings.Contains(p.body, "Signed out") {
		t.Fatalf("logout ended with status %d at %s; hops %v\n%.400s", p.status, p.url, p.hops, p.body)
	}
}
