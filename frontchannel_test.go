package oidcrp

import (
	"io"
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// newFrontchannelEnv is newEnv with a provider that does front-channel
// logout only, with sid when sessionSupported, and ID tokens carrying the
// provider session opSID.
func newFrontchannelEnv(t *testing.T, sessionSupported bool) *testEnv {
	t.Helper()
	return newEnv(t, devop.Options{
		Discovery: func(doc map[string]any) {
			doc["frontchannel_logout_supported"] = true
			doc["frontchannel_logout_session_supported"] = sessionSupported
		},
		IDToken: func(claims, _ map[string]any) { claims["sid"] = opSID },
	}, Config{})
}

// frontchannel makes the provider's framed GET, without the browser's
// cookies (third-party cookies do not reach the frame), and returns the
// response and its body.
func (e *testEnv) frontchannel(q url.Values) (*http.Response, string) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.app.URL+"/frontchannel-logout?"+q.Encode(), nil)
	req.Header.Set("Sec-Fetch-Dest", "iframe")
	req.Header.Set("Sec-Fetch-Site", "cross-site")
	resp, err := (&http.Client{Transport: e.browser.Transport}).Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp, string(b)
}

// wantFramePage checks that the answer may be framed and is never cached.
func wantFramePage(t *testing.T, resp *http.Response, body string, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	h := resp.Header
	if h.Get("Cache-Control") != "no-store" || h.Get("X-Frame-Options") != "" || strings.Contains(h.Get("Content-Security-Policy"), "frame-ancestors") {
		t.Errorf("headers forbid framing or allow caching: %v", h)
	}
	if !strings.HasPrefix(h.Get("Content-Type"), "text/html") || strings.Contains(strings.ToLower(body), "<script") {
		t.Errorf("page %q (%s)", body, h.Get("Content-Type"))
	}
}

func TestFrontchannelLogout(t *testing.T) {
	t.Parallel()
	e := newFrontchannelEnv(t, true)
	c := e.signedIn()
	m := e.op.Clients()[0].Metadata
	if m["frontchannel_logout_uri"] != e.app.URL+"/frontchannel-logout" || m["frontchannel_logout_session_required"] != true {
		t.Errorf("registered front-channel logout %v %v", m["frontchannel_logout_uri"], m["frontchannel_logout_session_required"])
	}
	if _, ok := m["backchannel_logout_uri"]; ok {
		t.Error("back-channel logout registered for a provider without it")
	}
	iss := e.op.Issuer()

	for name, q := range map[string]url.Values{
		"wrong iss":                  {"iss": {"https://evil.example"}, "sid": {opSID}},
		"sid without iss":            {"sid": {opSID}},
		"no sid, though required":    {"iss": {iss}},
		"nothing, though sid needed": {},
	} {
		resp, body := e.frontchannel(q)
		wantFramePage(t, resp, body, http.StatusBadRequest)
		if got := e.replay("/", c); got != http.StatusOK {
			t.Fatalf("%s: the session ended: status %d", name, got)
		}
	}

	resp, body := e.frontchannel(url.Values{"iss": {iss}, "sid": {"another-provider-session"}})
	wantFramePage(t, resp, body, http.StatusOK)
	if got := e.replay("/", c); got != http.StatusOK {
		t.Fatalf("a logout of another provider session ended this one: status %d", got)
	}

	resp, body = e.frontchannel(url.Values{"iss": {iss}, "sid": {opSID}})
	wantFramePage(t, resp, body, http.StatusOK)
	if got := e.replay("/", c); got != http.StatusUnauthorized {
		t.Errorf("session after front-channel logout: status %d, want 401", got)
	}

	req, _ := http.NewRequest(http.MethodPost, e.app.URL+"/frontchannel-logout", nil)
	resp2, err := (&http.Client{Transport: e.browser.Transport}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp2.Body.Close()
	if resp2.StatusCode != http.StatusMethodNotAllowed {
		t.Errorf("POST: status %d, want 405", resp2.StatusCode)
	}
}

// Without sid in the registration, a request without sid ends the session
// of the cookie that came with it.
func TestFrontchannelLogoutWithoutSid(t *testing.T) {
	t.Parallel()
	e := newFrontchannelEnv(t, false)
	c := e.signedIn()
	if v, ok := e.op.Clients()[0].Metadata["frontchannel_logout_session_required"]; ok && v != false {
		t.Errorf("frontchannel_logout_session_required %v for a provider without sid support", v)
	}
	resp, body := e.frontchannel(url.Values{})
	wantFramePage(t, resp, body, http.StatusOK)
	if got := e.replay("/", c); got != http.StatusOK {
		t.Fatalf("a request without a cookie ended the session: status %d", got)
	}
	resp = e.get(e.app.URL+"/frontchannel-logout?iss="+url.QueryEscape(e.op.Issuer()), "")
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	wantFramePage(t, resp, string(b), http.StatusOK)
	if got := e.replay("/", c); got != http.StatusUnauthorized {
		t.Errorf("session after a front-channel logout with its cookie: status %d, want 401", got)
	}
}

func TestFrontchannelLogoutRateBounded(t *testing.T) {
	t.Parallel()
	e := newFrontchannelEnv(t, true)
	c := e.signedIn()
	iss := e.op.Issuer()
	var limited int
	for i := range frontchannelBurst + 5 {
		resp, _ := e.frontchannel(url.Values{"iss": {iss}, "sid": {"made-up-" + string(rune('a'+i%26)) + randomString()[:8]}})
		if resp.StatusCode == http.StatusTooManyRequests {
			limited++
		}
	}
	if limited == 0 {
		t.Errorf("%d front-channel logouts of made-up sessions at once were all accepted", frontchannelBurst+5)
	}
	if got := e.replay("/", c); got != http.StatusOK {
		t.Fatalf("the session ended: status %d", got)
	}
}
