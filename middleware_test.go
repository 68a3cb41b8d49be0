package oidcrp

import (
	"net/http"
	"strings"
	"testing"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// TestProtectedResponsesNotStored: what Require serves to a signed-in user
// is not kept by caches or the browser's history, unless the handler says
// otherwise or Config.AllowCaching is set.
func TestProtectedResponsesNotStored(t *testing.T) {
	e := newEnv(t, devop.Options{}, Config{})
	e.login("/")
	resp := e.get(e.app.URL+"/", html)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Vary") != "Cookie" {
		t.Errorf("protected response: %d Cache-Control %q Vary %q", resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Values("Vary"))
	}
	// Optional leaves caching to the application.
	resp = e.get(e.app.URL+"/public", html)
	resp.Body.Close()
	if cc := resp.Header.Get("Cache-Control"); cc != "" {
		t.Errorf("Optional set Cache-Control %q", cc)
	}

	// The handler may override the default.
	e.app.Config.Handler = e.rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Cache-Control", "private, max-age=60")
		w.Header().Add("Vary", "Accept")
	}))
	resp = e.get(e.app.URL+"/", html)
	resp.Body.Close()
	if cc, vary := resp.Header.Get("Cache-Control"), resp.Header.Values("Vary"); cc != "private, max-age=60" || strings.Join(vary, ",") != "Cookie,Accept" {
		t.Errorf("handler's headers: Cache-Control %q Vary %q", cc, vary)
	}

	// AllowCaching leaves the headers alone.
	e2 := newEnv(t, devop.Options{}, Config{AllowCaching: true})
	e2.login("/")
	resp = e2.get(e2.app.URL+"/", html)
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "" || resp.Header.Get("Vary") != "" {
		t.Errorf("AllowCaching: %d Cache-Control %q Vary %q", resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Values("Vary"))
	}
}

// TestTenantProtectedResponsesNotStored: Tenants.Require does the same.
func TestTenantProtectedResponsesNotStored(t *testing.T) {
	e := newTenantEnv(t, "a")
	if status, _ := e.login("/t/a/home"); status != http.StatusOK {
		t.Fatalf("login: %d", status)
	}
	resp := e.get(e.app.URL + "/t/a/home")
	resp.Body.Close()
	if resp.StatusCode != 200 || resp.Header.Get("Cache-Control") != "no-store" || resp.Header.Get("Vary") != "Cookie" {
		t.Errorf("tenant's protected response: %d Cache-Control %q Vary %q", resp.StatusCode, resp.Header.Get("Cache-Control"), resp.Header.Values("Vary"))
	}
}

// TestNoStoreSharesNoWritableSlice: the shared header values are never
// written through by a handler that adds to them, and an existing Vary is
// kept.
func TestNoStoreSharesNoWritableSlice(t *testing.T) {
	t.Parallel()
	h := http.Header{"Vary": {"Accept"}}
	noStore(h)
	h.Add("Cache-Control", "private")
	if got := h.Values("Vary"); len(got) != 2 || got[0] != "Accept" || got[1] != "Cookie" {
		t.Errorf("Vary %q, want Accept, Cookie", got)
	}
	again := http.Header{}
	noStore(again)
	if got := again.Values("Cache-Control"); len(got) != 1 || got[0] != "no-store" {
		t.Errorf("a handler's Add changed the shared value: Cache-Control %q", got)
	}
	noStore(h)
	if got := h.Values("Vary"); len(got) != 2 {
		t.Errorf("Vary %q: Cookie added twice", got)
	}
}
