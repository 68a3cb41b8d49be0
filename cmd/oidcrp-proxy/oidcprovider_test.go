package main

import (
	"net/http"
	"strings"
	"testing"

	"github.com/oidcrp/oidcrp/internal/interop"
)

// TestWithOidcProvider runs two proxies against a real OpenID Provider
// (panva's oidc-provider, pinned in internal/interop; skipped without its npm
// packages unless CI is set): a browser signs in through the first, the
// upstream gets the identity, the second signs in through the same provider
// session, and signing out at the first ends the second's session through
// back-channel logout.
func TestWithOidcProvider(t *testing.T) {
	op := interop.Start(t, interop.Options{BackchannelLogout: true})
	up := newUpstream(t)
	first := startProxy(t, "-issuer", op.Issuer, "-upstream", up.URL, "-scopes", "profile,email,groups")
	// The second on "localhost": the browser keeps its cookies apart from
	// the first's on 127.0.0.1 (cookies do not depend on the port).
	addr := freeAddr(t)
	second := "http://localhost:" + addr[strings.LastIndexByte(addr, ':')+1:]
	startProxy(t, "-addr", addr, "-public-url", second, "-issuer", op.Issuer, "-upstream", up.URL, "-scopes", "profile,email,groups")
	b := newBrowser(t)

	// The provider logs its test user in and grants consent without a page.
	resp, body := b.get(first.base+"/page", "text/html", spoofed...)
	e := decodeEcho(t, resp, body)
	if e.URI != "/page" {
		t.Errorf("after sign-in the browser landed at %q", e.URI)
	}
	resp, body = b.get(first.base+"/page", "text/html", spoofed...)
	e = decodeEcho(t, resp, body)
	checkNoSpoof(t, e.Headers)
	want := map[string]string{
		"X-Forwarded-User":   interop.TestUserSub,
		"X-Forwarded-Email":  interop.TestUserEmail,
		"X-Forwarded-Groups": strings.Join(interop.TestUserGroups, ","),
	}
	for name, v := range want {
		if got := e.Headers.Get(name); got != v {
			t.Errorf("upstream got %s %q, want %q", name, got, v)
		}
	}

	resp, body = b.get(second+"/other", "text/html")
	if e := decodeEcho(t, resp, body); e.Headers.Get("X-Forwarded-User") != interop.TestUserSub {
		t.Fatalf("the second proxy passed %q", e.Headers.Get("X-Forwarded-User"))
	}

	// Sign out at the first: RP-initiated logout, then the provider's
	// logout token reaches the second before it answers the browser.
	out, _ := http.NewRequest(http.MethodPost, first.base+"/oauth2/sign_out", strings.NewReader(""))
	out.Header.Set("Origin", first.base)
	out.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	out.Header.Set("Accept", "text/html")
	if resp, body := b.do(out); resp.StatusCode != 200 || !strings.Contains(body, "Signed out") {
		t.Fatalf("sign-out ended with %d at %s: %.300s", resp.StatusCode, resp.Request.URL, body)
	}
	if !strings.Contains(op.Logs(), "backchannel.success") {
		t.Errorf("the provider delivered no logout token; provider log:\n%s", op.Logs())
	}
	for _, base := range []string{first.base, second} {
		if resp, _ := b.get(base+"/api", "application/json"); resp.StatusCode != http.StatusUnauthorized {
			t.Errorf("%s after sign-out: %d, want 401", base, resp.StatusCode)
		}
	}
}
