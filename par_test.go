package oidcrp

import (
	"context"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"testing"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// loginStart starts a login at path and returns the app's first answer,
// without following it.
func (e *testEnv) loginStart(path string) *http.Response {
	e.t.Helper()
	resp := e.get(e.app.URL+path, html)
	resp.Body.Close()
	return resp
}

// pushedParams are the authorization request parameters a PAR request
// must carry.
var pushedParams = []string{"response_type", "client_id", "redirect_uri", "scope", "state", "nonce", "code_challenge", "code_challenge_method"}

// TestPARRequiredByProvider: a provider requiring PAR gets the request
// pushed, with the client authenticated as at the token endpoint, and the
// browser's redirect carries only client_id and request_uri.
func TestPARRequiredByProvider(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	e := newEnv(t, devop.Options{RequirePAR: true}, Config{Trace: rec.trace()})

	resp := e.loginStart("/page")
	loc, err := url.Parse(resp.Header.Get("Location"))
	if resp.StatusCode != http.StatusFound || err != nil {
		t.Fatalf("login start: %d %q", resp.StatusCode, resp.Header.Get("Location"))
	}
	q := loc.Query()
	keys := slices.Sorted(func(yield func(string) bool) {
		for k := range q {
			if !yield(k) {
				return
			}
		}
	})
	if !slices.Equal(keys, []string{"client_id", "request_uri"}) || !strings.HasPrefix(q.Get("request_uri"), "urn:ietf:params:oauth:request_uri:") {
		t.Fatalf("the redirect carries %v, want only client_id and request_uri", q)
	}
	form, header := e.op.LastPARRequest()
	for _, k := range pushedParams {
		if len(form[k]) != 1 || form.Get(k) == "" {
			t.Errorf("the pushed request lacks %s: %v", k, form)
		}
	}
	if form.Get("client_id") != q.Get("client_id") || form.Get("response_type") != "code" || form.Get("code_challenge_method") != "S256" ||
		form.Get("redirect_uri") != e.app.URL+"/auth/callback" || !strings.Contains(form.Get("scope"), "openid") {
		t.Errorf("pushed parameters %v", form)
	}
	user, pass, ok := (&http.Request{Header: header}).BasicAuth()
	c := e.op.Clients()[0]
	if !ok || user != url.QueryEscape(c.ID) || pass != url.QueryEscape(c.Secret) || form.Has("client_secret") {
		t.Errorf("the PAR request is not authenticated with client_secret_basic as registered (%q, %v)", user, ok)
	}

	// The browser goes on from there: the login completes.
	hops := e.follow(resp)
	if last := hops[len(hops)-1]; last.StatusCode != http.StatusOK || last.Request.URL.Path != "/page" {
		t.Fatalf("login with PAR ended with %d at %s\n%s", last.StatusCode, last.Request.URL, e.logs)
	}
	if n := e.op.Stats().PAR; n != 1 {
		t.Errorf("%d PAR requests, want 1", n)
	}
	events := strings.Join(rec.take(), " ")
	if !strings.Contains(events, "start:par stop:par stop:login_start") {
		t.Errorf("no par span within login_start: %s", events)
	}
}

// TestPAROnlyWhenRequiredOrConfigured: a provider that offers PAR without
// requiring it gets ordinary authorization requests, unless the
// configuration asks for PAR.
func TestPAROnlyWhenRequiredOrConfigured(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{PAR: true}, Config{})
	e.login("/")
	if n := e.op.Stats().PAR; n != 0 {
		t.Errorf("%d PAR requests to a provider that does not require them", n)
	}
	if q := e.op.LastAuthorizeRequest(); q.Has("request_uri") || q.Get("state") == "" {
		t.Errorf("authorization request %v, want the parameters themselves", q)
	}

	// A registration requiring PAR of this client (RFC 9126 §6).
	e3 := newEnv(t, devop.Options{PAR: true, Registration: func(_ *int, body map[string]any) {
		body["require_pushed_authorization_requests"] = true
	}}, Config{})
	e3.login("/")
	if n := e3.op.Stats().PAR; n != 1 {
		t.Errorf("%d PAR requests for a client registered with require_pushed_authorization_requests, want 1", n)
	}

	e2 := newEnv(t, devop.Options{PAR: true}, Config{PushedAuthorization: true})
	e2.login("/")
	if n := e2.op.Stats().PAR; n != 1 {
		t.Errorf("%d PAR requests with Config.PushedAuthorization, want 1", n)
	}
	if q := e2.op.LastAuthorizeRequest(); !q.Has("request_uri") || q.Has("state") {
		t.Errorf("authorization request %v, want client_id and request_uri", q)
	}
}

// TestPARClientAuthentication: the PAR endpoint gets the client
// authentication the token endpoint gets, whatever the method, including
// the raw HTTP Basic encoding learnt from a provider that does not
// form-decode credentials.
func TestPARClientAuthentication(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		opts  devop.Options
		check func(t *testing.T, form url.Values, header http.Header, c devop.Client)
	}{
		"client_secret_post": {
			opts: devop.Options{AuthMethods: []string{"client_secret_post"}},
			check: func(t *testing.T, form url.Values, header http.Header, c devop.Client) {
				if form.Get("client_secret") != c.Secret || header.Get("Authorization") != "" {
					t.Error("the PAR request is not authenticated with client_secret_post")
				}
			},
		},
		"none": {
			opts: devop.Options{AuthMethods: []string{"none"}},
			check: func(t *testing.T, form url.Values, header http.Header, c devop.Client) {
				if form.Has("client_secret") || header.Get("Authorization") != "" || form.Get("client_id") != c.ID {
					t.Error("a public client sent more than its client_id")
				}
			},
		},
		"raw basic": {
			opts: devop.Options{AwkwardSecrets: true, RawBasic: true, AuthMethods: []string{"client_secret_basic"}},
			check: func(t *testing.T, form url.Values, header http.Header, c devop.Client) {
				user, pass, ok := (&http.Request{Header: header}).BasicAuth()
				if !ok || user != c.ID || pass != c.Secret {
					t.Error("the PAR request does not carry the raw HTTP Basic credentials the provider takes")
				}
			},
		},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			tc.opts.RequirePAR = true
			e := newEnv(t, tc.opts, Config{})
			e.login("/")
			form, header := e.op.LastPARRequest()
			tc.check(t, form, header, e.op.Clients()[0])
			// The token endpoint got the same.
			tform, theader := e.op.LastTokenRequest()
			if tform.Get("client_secret") != form.Get("client_secret") || theader.Get("Authorization") != header.Get("Authorization") {
				t.Error("the token endpoint and the PAR endpoint got different client authentication")
			}
		})
	}
}

// TestPAREndpointError: a PAR endpoint that refuses the request answers the
// login with 502 and logs the provider's error; one that fails on its side
// answers 503. Neither sends the browser anywhere, and no login cookie is
// left behind.
func TestPAREndpointError(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		status int
		body   map[string]any
		want   int
		log    []string
	}{
		"refused":        {http.StatusBadRequest, map[string]any{"error": "invalid_request", "error_description": "scope not allowed here"}, http.StatusBadGateway, []string{"invalid_request", "scope not allowed here", "HTTP 400"}},
		"unavailable":    {http.StatusServiceUnavailable, map[string]any{"error": "temporarily_unavailable"}, http.StatusServiceUnavailable, []string{"temporarily_unavailable", "HTTP 503"}},
		"no request_uri": {http.StatusCreated, map[string]any{"expires_in": 60}, http.StatusBadGateway, []string{"no usable request_uri"}},
		"expired":        {http.StatusCreated, map[string]any{"request_uri": "urn:x", "expires_in": 0}, http.StatusBadGateway, []string{"no positive expires_in"}},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			e := newEnv(t, devop.Options{RequirePAR: true, PushedAuthorization: func(status *int, body map[string]any) {
				*status = tc.status
				clear(body)
				for k, v := range tc.body {
					body[k] = v
				}
			}}, Config{Trace: rec.trace()})
			for range 2 {
				resp := e.loginStart("/")
				if resp.StatusCode != tc.want || resp.Header.Get("Location") != "" {
					t.Fatalf("login start: %d to %q, want %d and no redirect", resp.StatusCode, resp.Header.Get("Location"), tc.want)
				}
				for _, c := range resp.Cookies() {
					if strings.Contains(c.Name, flowCookiePrefix) && c.MaxAge >= 0 {
						t.Errorf("a login cookie %s was set for a login that did not start", c.Name)
					}
				}
			}
			if n := e.op.Stats().Authorize; n != 0 {
				t.Errorf("%d authorization requests after the PAR endpoint failed", n)
			}
			logs := e.logs.String()
			for _, s := range append(tc.log, "cannot start login", "level=ERROR") {
				if !strings.Contains(logs, s) {
					t.Errorf("the logs lack %q:\n%s", s, logs)
				}
			}
			if events := strings.Join(rec.take(), " "); !strings.Contains(events, "exception:par:pushed_authorization") {
				t.Errorf("no par exception traced: %s", events)
			}
		})
	}
}

// TestPARRequiredWithoutEndpoint: a provider that requires PAR but does not
// say where, or a configuration asking for PAR at a provider without it,
// fails the setup with a clear error (503), not a login that loops.
func TestPARRequiredWithoutEndpoint(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		opts devop.Options
		cfg  Config
		msg  string
	}{
		"required by the provider": {devop.Options{RequirePAR: true, HidePAREndpoint: true}, Config{}, "requires pushed authorization requests (require_pushed_authorization_requests) but advertises no usable pushed_authorization_request_endpoint"},
		"unusable endpoint": {devop.Options{RequirePAR: true, Discovery: func(doc map[string]any) {
			doc["pushed_authorization_request_endpoint"] = "ftp://elsewhere/par"
		}}, Config{}, "requires pushed authorization requests"},
		"asked by the configuration": {devop.Options{}, Config{PushedAuthorization: true}, "Config.PushedAuthorization is set but provider"},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			e := newEnv(t, tc.opts, tc.cfg)
			err := e.rp.Ready(context.Background())
			if !errors.Is(err, ErrUnavailable) || !strings.Contains(err.Error(), tc.msg) {
				t.Fatalf("Ready: %v, want ErrUnavailable saying %q", err, tc.msg)
			}
			resp := e.loginStart("/")
			if resp.StatusCode != http.StatusServiceUnavailable || resp.Header.Get("Location") != "" {
				t.Fatalf("login start: %d to %q, want 503 without a redirect", resp.StatusCode, resp.Header.Get("Location"))
			}
			if n := e.op.Stats().Authorize + e.op.Stats().Registration; n != 0 {
				t.Errorf("%d registration or authorization requests", n)
			}
			if !strings.Contains(e.logs.String(), tc.msg) {
				t.Errorf("the logs do not say %q:\n%s", tc.msg, e.logs)
			}
		})
	}
}

// TestPARForgottenClient: a provider that forgot the client refuses it at
// the PAR endpoint; the client is replaced and the request pushed again,
// once, so the login still goes through.
func TestPARForgottenClient(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{RequirePAR: true}, Config{})
	e.login("/")
	e.op.ForgetClients()
	e.browser.Jar, _ = cookiejar.New(nil)
	if got := e.login("/"); got["sub"] != "demo-user" {
		t.Fatalf("login after the provider forgot the client: %v", got)
	}
	if n := len(e.op.Clients()); n != 1 || e.op.Stats().Registration != 2 {
		t.Errorf("%d clients, %d registrations; want the client registered again once", n, e.op.Stats().Registration)
	}
	if !strings.Contains(e.logs.String(), "pushing the authorization request again with the renewed client") {
		t.Errorf("no log of the retried push:\n%s", e.logs)
	}
}
