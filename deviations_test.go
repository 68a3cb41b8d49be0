package oidcrp

import (
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"strings"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// Tests of providers that deviate from the specifications in ways seen in
// real deployments.

// stringifyTimestamps rewrites client_id_issued_at and
// client_secret_expires_at of a client information response as JSON strings.
func stringifyTimestamps(body map[string]any) {
	for _, k := range []string{"client_id_issued_at", "client_secret_expires_at"} {
		if v, ok := body[k]; ok {
			body[k] = fmt.Sprint(v)
		}
	}
}

// TestTimestampsAsStrings: a provider sending client_id_issued_at and
// client_secret_expires_at as JSON strings, in the registration response and
// in RFC 7592 responses, is understood; a replica starting later reads the
// registration (RFC 7592) instead of registering again.
func TestTimestampsAsStrings(t *testing.T) {
	t.Parallel()
	for _, lifetime := range []time.Duration{0, 24 * time.Hour} {
		t.Run(fmt.Sprint("secret lifetime ", lifetime), func(t *testing.T) {
			t.Parallel()
			store := new(MemoryStore)
			e := newEnv(t, devop.Options{
				SecretLifetime:      lifetime,
				Registration:        func(_ *int, body map[string]any) { stringifyTimestamps(body) },
				ClientConfiguration: func(_ string, _ *int, body map[string]any) { stringifyTimestamps(body) },
			}, Config{Store: store})
			e.login("/")
			want := e.op.Clients()[0].SecretExpiresAt
			if got := e.rp.Status().SecretExpiresAt; !got.Equal(want.Truncate(time.Second)) {
				t.Errorf("secret expires at %v, want %v", got, want)
			}

			replica := e.newRP(Config{Store: store})
			e.app.Config.Handler = e.handler(replica)
			e.browser.Jar, _ = cookiejar.New(nil)
			e.login("/")
			if s := e.op.Stats(); s.Registration != 1 || s.RegistrationRead != 1 || s.Token != 2 {
				t.Errorf("stats %+v: want 1 registration, 1 read and a token request per login", s)
			}
			if got := replica.Status().SecretExpiresAt; !got.Equal(want.Truncate(time.Second)) {
				t.Errorf("replica: secret expires at %v, want %v", got, want)
			}
		})
	}
}

// TestClientInfoTimestamps covers the forms of client_id_issued_at and
// client_secret_expires_at in a client information response.
func TestClientInfoTimestamps(t *testing.T) {
	t.Parallel()
	const issuer = "https://op.example.com"
	want := ClientMetadata{RedirectURIs: []string{"https://app.example.com/cb"}}
	g := registrar{now: time.Now}
	for _, tc := range []struct {
		issued, expires string // JSON values; "" leaves the member out
		wantIssued      int64
		wantExpires     int64
		err             string // in the error when the response is refused
	}{
		{issued: `1767225600`, expires: `0`, wantIssued: 1767225600},
		{issued: `"1767225600"`, expires: `"0"`, wantIssued: 1767225600},
		{issued: `"1767225600"`, expires: `"1798761600"`, wantIssued: 1767225600, wantExpires: 1798761600},
		{expires: `1798761600`, wantExpires: 1798761600},
		{issued: `null`, expires: `null`},
		{issued: `"soon"`, err: `bad client_id_issued_at "soon"`},
		{expires: `"never"`, err: `bad client_secret_expires_at "never"`},
		{expires: `""`, err: `bad client_secret_expires_at ""`},
		{expires: `"-5"`, err: `bad client_secret_expires_at "-5"`},
		{expires: `-5`, err: `bad client_secret_expires_at "-5"`},
		{expires: `1798761600.0`, wantExpires: 1798761600},
		{expires: `"1.7987616005e9"`, wantExpires: 1798761600},
		{expires: `1e300`, err: `bad client_secret_expires_at "1e300"`},
		{expires: `"99999999999999999999"`, err: `bad client_secret_expires_at "99999999999999999999"`},
		{expires: `"0x10"`, err: `bad client_secret_expires_at "0x10"`},
		{expires: `" 1798761600"`, err: `bad client_secret_expires_at " 1798761600"`},
		{expires: `true`, err: `bad client_secret_expires_at "true"`},
		{issued: `{}`, err: `bad client_id_issued_at "{}"`},
	} {
		name := tc.issued + "," + tc.expires
		t.Run(name, func(t *testing.T) {
			body := `{"client_id":"c1","client_secret":"s","redirect_uris":["https://app.example.com/cb"]`
			if tc.issued != "" {
				body += `,"client_id_issued_at":` + tc.issued
			}
			if tc.expires != "" {
				body += `,"client_secret_expires_at":` + tc.expires
			}
			body += "}"
			c, err := g.credentials(issuer, want, nil, []byte(body))
			if tc.err != "" {
				var re *RegistrationError
				if !errors.As(err, &re) || !strings.Contains(err.Error(), tc.err) {
					t.Fatalf("error %v, want a RegistrationError with %q", err, tc.err)
				}
				return
			}
			if err != nil {
				t.Fatal(err)
			}
			if got := unixOrZero(c.ClientIDIssuedAt); got != tc.wantIssued {
				t.Errorf("client_id_issued_at %d, want %d", got, tc.wantIssued)
			}
			if got := unixOrZero(c.ClientSecretExpiresAt); got != tc.wantExpires {
				t.Errorf("client_secret_expires_at %d, want %d", got, tc.wantExpires)
			}
		})
	}
}

// TestGarbageTimestampRefused: a registration response whose
// client_secret_expires_at is not a number is refused with a
// RegistrationError saying which member is wrong, not taken for a secret
// that never expires.
func TestGarbageTimestampRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{Registration: func(_ *int, body map[string]any) {
		body["client_secret_expires_at"] = "in a year"
	}}, Config{})
	resp := e.get(e.app.URL+"/", html)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", resp.StatusCode)
	}
	if s := e.rp.Status(); !strings.Contains(s.LastError, `bad client_secret_expires_at "in a year"`) {
		t.Errorf("last error %q", s.LastError)
	}
}

// TestIDTokenAudienceArray: an aud claim may be an array (OIDC Core §2). One
// holding only this client is accepted; extra audiences are refused
// (§3.1.3.7 rule 3: "additional audiences not trusted by the Client"), even
// with an azp naming this client: rules 4 and 5 make azp a further check
// for tokens with several audiences, not a way to trust the others.
func TestIDTokenAudienceArray(t *testing.T) {
	t.Parallel()
	for _, tc := range []struct {
		name string
		hook func(c map[string]any)
		ok   bool
	}{
		{"only this client", func(c map[string]any) { c["aud"] = []any{c["aud"]} }, true},
		{"only this client, azp", func(c map[string]any) { c["azp"] = c["aud"]; c["aud"] = []any{c["aud"]} }, true},
		{"an extra audience", func(c map[string]any) { c["aud"] = []any{c["aud"], "other-client"} }, false},
		{"an extra audience, azp this client", func(c map[string]any) { c["azp"] = c["aud"]; c["aud"] = []any{c["aud"], "other-client"} }, false},
		{"an extra audience first, azp this client", func(c map[string]any) { c["azp"] = c["aud"]; c["aud"] = []any{"other-client", c["aud"]} }, false},
		{"another client only", func(c map[string]any) { c["aud"] = []any{"other-client"} }, false},
		{"empty", func(c map[string]any) { c["aud"] = []any{} }, false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, devop.Options{IDToken: func(c, _ map[string]any) { tc.hook(c) }}, Config{})
			status, body := e.attempt("/")
			if tc.ok {
				if status != http.StatusOK {
					t.Fatalf("login ended with %d %s\nlogs:\n%s", status, body, e.logs)
				}
				// The ID token kept for logout names this client: it goes as id_token_hint.
				resp := e.postLogout()
				end, _ := url.Parse(resp.Header.Get("Location"))
				if end.Query().Get("id_token_hint") == "" {
					t.Errorf("logout redirect %s has no id_token_hint", end)
				}
				return
			}
			if status != http.StatusBadRequest || !strings.Contains(body, string(ReasonInvalidIDToken)) {
				t.Errorf("ended with %d %s, want 400 with reason %s", status, body, ReasonInvalidIDToken)
			}
			if e.cookie("oidcrp") != nil || e.handled.Load() != 0 {
				t.Error("signed in")
			}
			if !strings.Contains(e.logs.String(), "audience") {
				t.Errorf("not refused for its audience:\n%s", e.logs)
			}
		})
	}
}

// TestUnsignedIDTokenRefused: a provider that lists "none" among its ID
// token signing algorithms, and even registers it for the client, still
// never gets an unsigned ID token accepted.
func TestUnsignedIDTokenRefused(t *testing.T) {
	t.Parallel()
	for _, registered := range []bool{false, true} {
		t.Run(fmt.Sprint("registered none ", registered), func(t *testing.T) {
			t.Parallel()
			opts := devop.Options{
				Discovery: func(doc map[string]any) {
					doc["id_token_signing_alg_values_supported"] = []string{"none", "RS256"}
				},
				IDToken: func(_, h map[string]any) { h["alg"] = "none" },
			}
			if registered {
				opts.Registration = func(_ *int, body map[string]any) { body["id_token_signed_response_alg"] = "none" }
			}
			e := newEnv(t, opts, Config{})
			status, body := e.attempt("/")
			if status != http.StatusBadRequest || !strings.Contains(body, string(ReasonInvalidIDToken)) {
				t.Errorf("ended with %d %s, want 400 with reason %s", status, body, ReasonInvalidIDToken)
			}
			if e.cookie("oidcrp") != nil || e.handled.Load() != 0 {
				t.Error("signed in with an unsigned ID token")
			}
			if !strings.Contains(e.logs.String(), `unexpected signature algorithm \"none\"`) {
				t.Errorf("not refused for its algorithm:\n%s", e.logs)
			}
			if s := e.op.Stats(); s.Token != 1 {
				t.Errorf("%d token requests, want 1", s.Token)
			}
		})
	}
}

// TestRegisteredAuthMethodDeviations: the token endpoint authentication
// method is the one the provider registered, whether it is the one asked
// for or not; when the registration response leaves it out, the one asked
// for. Every login works at the first attempt: one registration, one
// authorization request, one token request.
func TestRegisteredAuthMethodDeviations(t *testing.T) {
	t.Parallel()
	dropMethod := func(_ *int, body map[string]any) { delete(body, "token_endpoint_auth_method") }
	for _, tc := range []struct {
		name string
		opts devop.Options
		used string // the method the token request must use
	}{
		{"basic asked, post registered", devop.Options{ForceAuthMethod: "client_secret_post"}, "client_secret_post"},
		{"post asked, basic registered", devop.Options{AuthMethods: []string{"client_secret_post"}, ForceAuthMethod: "client_secret_basic"}, "client_secret_basic"},
		{"basic asked, none registered", devop.Options{ForceAuthMethod: "none"}, "none"},
		{"basic asked and registered, not returned", devop.Options{Registration: dropMethod}, "client_secret_basic"},
		{"post asked and registered, not returned", devop.Options{AuthMethods: []string{"client_secret_post"}, Registration: dropMethod}, "client_secret_post"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts, Config{})
			e.login("/")
			if s := e.op.Stats(); s.Registration != 1 || s.Authorize != 1 || s.Token != 1 {
				t.Errorf("stats %+v: want one registration, authorization and token request\nlogs:\n%s", s, e.logs)
			}
			form, header := e.op.LastTokenRequest()
			var used string
			switch {
			case header.Get("Authorization") != "":
				used = "client_secret_basic"
			case form.Get("client_secret") != "":
				used = "client_secret_post"
			default:
				used = "none"
			}
			if used != tc.used {
				t.Errorf("token request used %s, want %s", used, tc.used)
			}
			if got := e.rp.Status().AuthMethod; got != tc.used {
				t.Errorf("Status().AuthMethod %q, want %q", got, tc.used)
			}
		})
	}
}

// TestUnsupportedRegisteredAuthMethodRefused: a registration response naming
// a method the relying party cannot use is refused, saying which.
func TestUnsupportedRegisteredAuthMethodRefused(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{ForceAuthMethod: "tls_client_auth"}, Config{})
	resp := e.get(e.app.URL+"/", html)
	resp.Body.Close()
	if resp.StatusCode != http.StatusServiceUnavailable {
		t.Errorf("status %d, want 503", resp.StatusCode)
	}
	if s := e.rp.Status(); !strings.Contains(s.LastError, `unsupported token_endpoint_auth_method "tls_client_auth"`) {
		t.Errorf("last error %q", s.LastError)
	}
}

// TestLogoutWithoutRegisteredPostLogoutURI: a provider that did not register
// the post-logout redirect URI (it is missing from the registration
// response) would show an error page for a logout that names it. Logout
// ends the local session and shows the relying party's own signed-out page
// instead of sending the browser there.
func TestLogoutWithoutRegisteredPostLogoutURI(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{RegistrationRequest: func(m map[string]any) {
		delete(m, "post_logout_redirect_uris")
	}}, Config{})
	e.login("/")
	if uris := e.op.Clients()[0].PostLogoutRedirectURIs; len(uris) != 0 {
		t.Fatalf("the provider registered post_logout_redirect_uris %q", uris)
	}
	old := e.cookie("oidcrp")
	resp := e.postLogout()
	if e.cookie("oidcrp") != nil {
		t.Error("session cookie kept after logout")
	}
	if status := e.replay("/", old); status != http.StatusUnauthorized {
		t.Errorf("replayed session cookie after logout: %d, want 401", status)
	}
	loc, _ := resp.Request.URL.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusSeeOther || loc.Host != resp.Request.URL.Host || loc.Path != "/logout" {
		t.Fatalf("logout answered %d to %s, want a redirect to our own page", resp.StatusCode, loc)
	}
	hops := e.follow(resp)
	last := hops[len(hops)-1]
	body, _ := io.ReadAll(last.Body)
	last.Body.Close()
	if last.StatusCode != http.StatusOK || !strings.Contains(string(body), "signed out") {
		t.Errorf("after logout: %d %s", last.StatusCode, body)
	}
	if n := e.op.Stats().EndSession; n != 0 {
		t.Errorf("%d end_session requests, want none", n)
	}
	if !strings.Contains(e.logs.String(), "did not register the post-logout redirect URI") {
		t.Errorf("the local-only logout is not explained in the logs:\n%s", e.logs)
	}
}
