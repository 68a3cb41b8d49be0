package oidcrp

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"strings"
	"testing"

	"github.com/oidcrp/oidcrp/internal/devop"
)

const viewport = `<meta name="viewport" content="width=device-width, initial-scale=1">`

func readBody(t *testing.T, resp *http.Response) string {
	t.Helper()
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

// checkPage asserts what every built-in page has: HTML, a viewport, the
// heading, and nothing loaded from elsewhere or run.
func checkPage(t *testing.T, h http.Header, page, heading string) {
	t.Helper()
	if ct := h.Get("Content-Type"); ct != "text/html; charset=utf-8" {
		t.Errorf("Content-Type %q", ct)
	}
	if !strings.Contains(page, viewport) {
		t.Errorf("no viewport meta in %s", page)
	}
	if !strings.Contains(page, "<h1>"+heading+"</h1>") {
		t.Errorf("heading %q missing in %s", heading, page)
	}
	for _, bad := range []string{"<script", "http-equiv", "src=", "http://", "https://"} {
		if strings.Contains(page, bad) {
			t.Errorf("page contains %q: %s", bad, page)
		}
	}
	if csp := h.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'none'") {
		t.Errorf("Content-Security-Policy %q", csp)
	}
}

// TestCancelledSignInPage: the user clicked Cancel at the provider. The page
// says so in words, offers a fresh login by a click only, and API clients
// still get JSON.
func TestCancelledSignInPage(t *testing.T) {
	e := newEnv(t, devop.Options{Authorize: func(v url.Values) {
		v.Del("code")
		v.Set("error", "access_denied")
		v.Set("error_description", "the end-user cancelled the sign-in")
	}}, Config{})
	status, page := e.attempt("/")
	if status != http.StatusForbidden {
		t.Fatalf("status %d: %s", status, page)
	}
	checkPage(t, http.Header{"Content-Type": {"text/html; charset=utf-8"}, "Content-Security-Policy": {"default-src 'none'"}}, page, "Sign-in was cancelled")
	if strings.Contains(page, "Forbidden") || !strings.Contains(page, `<a class="button" href="/">Try again</a>`) ||
		!strings.Contains(page, "not signed in") {
		t.Errorf("cancel page: %s", page)
	}

	// The same callback for an API client: JSON, as before.
	resp := e.get(e.app.URL+"/", html)
	resp.Body.Close()
	authz := e.get(resp.Header.Get("Location"), html)
	authz.Body.Close()
	cb := e.get(authz.Header.Get("Location"), "application/json")
	var j map[string]string
	if err := json.Unmarshal([]byte(readBody(t, cb)), &j); err != nil || cb.StatusCode != http.StatusForbidden ||
		j["error"] != string(ReasonProviderError) || cb.Header.Get("Content-Type") != "application/json" {
		t.Errorf("API client: %d %v %v", cb.StatusCode, j, err)
	}
}

// TestErrorPageHeadings: each failure gets a heading in words, never the
// status text, and provider-sent text is escaped.
func TestErrorPageHeadings(t *testing.T) {
	for _, tc := range []struct {
		status  int
		err     error
		heading string
		link    string
	}{
		{403, &AuthError{Reason: ReasonProviderError, ErrorCode: "access_denied"}, "Sign-in was cancelled", "Try again"},
		{403, &AuthError{Reason: ReasonProviderError, ErrorCode: "<b>x</b>"}, "The identity provider did not sign you in", "Try again"},
		{401, &AuthError{Reason: ReasonLoginRequired}, "Sign-in required", "Sign in"},
		{400, &AuthError{Reason: ReasonStateMismatch}, "This sign-in has expired", "Sign in again"},
		{400, &AuthError{Reason: ReasonInvalidIDToken}, "Sign-in could not be completed", "Try again"},
		{502, &AuthError{Reason: ReasonTokenExchange}, "Sign-in could not be completed", "Try again"},
		{403, refusal(ReasonBadRequest, "cross-site logout refused"), "This request was refused", "Back to the application"},
		{503, fmt.Errorf("%w: down", ErrUnavailable), "Sign-in is temporarily unavailable", "Try again"},
		{500, io.EOF, "Something went wrong", "Back to the application"},
	} {
		rec := httptest.NewRecorder()
		writePage(rec, tc.status, errorView(tc.status, tc.err))
		page := rec.Body.String()
		if rec.Code != tc.status {
			t.Errorf("%v: status %d", tc.err, rec.Code)
		}
		checkPage(t, rec.Header(), page, tc.heading)
		if strings.Contains(page, http.StatusText(tc.status)) {
			t.Errorf("%v: page shows the status text %q", tc.err, http.StatusText(tc.status))
		}
		if !strings.Contains(page, ">"+tc.link+"</a>") {
			t.Errorf("%v: no %q link in %s", tc.err, tc.link, page)
		}
		if strings.Contains(page, "<b>") {
			t.Errorf("provider text not escaped: %s", page)
		}
	}
}

// TestSignOutPageShowsUser: GET LogoutPath names the signed-in user, escaped.
func TestSignOutPageShowsUser(t *testing.T) {
	e := newEnv(t, devop.Options{Claims: map[string]any{"name": `Eve <script>alert(1)</script>`, "email": "eve@example.test"}}, Config{})
	e.login("/")
	resp := e.get(e.app.URL+"/logout", html)
	page := readBody(t, resp)
	checkPage(t, resp.Header, page, "Sign out")
	if !strings.Contains(page, "Eve &lt;script&gt;alert(1)&lt;/script&gt; (eve@example.test)") || strings.Contains(page, "<script>") {
		t.Errorf("sign-out page does not name the user, escaped: %s", page)
	}
	if !strings.Contains(page, `<form method="post" action="/logout">`) {
		t.Errorf("no sign-out form: %s", page)
	}

	e.postLogout()
	resp = e.get(e.app.URL+"/logout?done", html)
	page = readBody(t, resp)
	checkPage(t, resp.Header, page, "You are signed out")
	if strings.Contains(page, "Eve") {
		t.Errorf("signed-out page still names the user: %s", page)
	}
	resp = e.get(e.app.URL+"/logout", html)
	page = readBody(t, resp)
	checkPage(t, resp.Header, page, "You are not signed in")
	if strings.Contains(page, "<form") {
		t.Errorf("sign-out button without a session: %s", page)
	}
}

func TestDisplayName(t *testing.T) {
	for claims, want := range map[string]string{
		`{"name":"Ann","email":"ann@x.test"}`:         "Ann (ann@x.test)",
		`{"name":"ann@x.test","email":"ann@x.test"}`:  "ann@x.test",
		`{"preferred_username":"ann","email":"a@x"}`:  "ann (a@x)",
		`{"email":"ann@x.test"}`:                      "ann@x.test",
		`{}`:                                          "sub-1",
		`{"name":42,"preferred_username":"ann"}`:      "ann",
		`{"name":"","preferred_username":"","sub":1}`: "sub-1",
	} {
		if got := displayName(&User{Subject: "sub-1", claims: json.RawMessage(claims)}); got != want {
			t.Errorf("%s: %q, want %q", claims, got, want)
		}
	}
}
