package oidcrp

import (
	"context"
	"encoding/json"
	"net/http/cookiejar"
	"net/url"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// recorder is a Trace that records events as "start:op", "stop:op" and
// "exception:op:reason".
type recorder struct {
	mu     sync.Mutex
	events []string
	all    []Event
	kinds  []string // parallel to all
}

func (rec *recorder) trace() *Trace {
	add := func(kind string, ev Event) {
		rec.mu.Lock()
		defer rec.mu.Unlock()
		s := kind + ":" + string(ev.Op)
		if kind == "exception" {
			s += ":" + ev.Reason
		}
		rec.events = append(rec.events, s)
		rec.all = append(rec.all, ev)
		rec.kinds = append(rec.kinds, kind)
	}
	return &Trace{
		Start:     func(ctx context.Context, ev Event) context.Context { add("start", ev); return ctx },
		Stop:      func(ctx context.Context, ev Event) { add("stop", ev) },
		Exception: func(ctx context.Context, ev Event) { add("exception", ev) },
	}
}

func (rec *recorder) take() []string {
	rec.mu.Lock()
	defer rec.mu.Unlock()
	out := rec.events
	rec.events = nil
	return out
}

func TestTraceLoginSequences(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	e := newEnv(t, devop.Options{}, Config{Trace: rec.trace()})
	e.login("/")
	want := []string{
		"start:login_start",
		"start:discovery", "stop:discovery",
		"start:registration", "stop:registration",
		"stop:login_start",
		"start:login",
		"start:token_exchange", "stop:token_exchange",
		"start:jwks", "stop:jwks",
		"start:userinfo", "stop:userinfo",
		"stop:login",
	}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("first login events:\n got %v\nwant %v", got, want)
	}

	e.browser.Jar, _ = cookiejar.New(nil)
	e.login("/")
	want = []string{
		"start:login_start", "stop:login_start",
		"start:login", "start:token_exchange", "stop:token_exchange", "start:userinfo", "stop:userinfo", "stop:login",
	}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("second login events:\n got %v\nwant %v", got, want)
	}

	resp := e.get(e.app.URL+"/logout?x", html)
	resp.Body.Close()
	rec.take()

	for i, ev := range rec.all {
		if ev.Issuer != e.op.Issuer() {
			t.Errorf("event %s without issuer", ev.Op)
		}
		if ev.Op != opDiscovery && ev.Op != opRegistration && ev.Op != opLoginStart && ev.ClientID == "" {
			t.Errorf("event %s without client_id", ev.Op)
		}
		if rec.kinds[i] == "stop" && (ev.Op == opRegistration || ev.Op == opTokenExchange) && ev.Duration <= 0 {
			t.Errorf("event %s without duration", ev.Op)
		}
	}
	assertNoSecretsInEvents(t, e, rec)
}

func TestTraceRejections(t *testing.T) {
	t.Parallel()
	cases := []struct {
		name string
		opts devop.Options
		want []string
	}{
		{"state", devop.Options{Authorize: func(v url.Values) { v.Set("state", strings.Repeat("A", 43)) }},
			[]string{"start:login", "exception:login:state_mismatch"}},
		{"iss", devop.Options{Authorize: func(v url.Values) { v.Set("iss", "https://evil.example") }},
			[]string{"start:login", "exception:login:iss_mismatch"}},
		{"provider error", devop.Options{Authorize: func(v url.Values) { v.Del("code"); v.Set("error", "access_denied") }},
			[]string{"start:login", "exception:login:provider_error"}},
		{"nonce", devop.Options{IDToken: func(c, h map[string]any) { c["nonce"] = "x" }},
			[]string{"start:login", "start:token_exchange", "stop:token_exchange", "start:jwks", "stop:jwks", "exception:login:invalid_id_token"}},
		{"id token", devop.Options{IDToken: func(c, h map[string]any) { c["aud"] = "someone-else" }},
			[]string{"start:login", "start:token_exchange", "stop:token_exchange", "start:jwks", "stop:jwks", "exception:login:invalid_id_token"}},
		{"userinfo", devop.Options{UserInfo: func(c map[string]any) { c["sub"] = "other" }},
			[]string{"start:login", "start:token_exchange", "stop:token_exchange", "start:jwks", "stop:jwks",
				"start:userinfo", "exception:userinfo:", "exception:login:userinfo"}},
		{"token", devop.Options{TokenResponse: func(b map[string]any) { clear(b); b["error"] = "invalid_grant" }},
			[]string{"start:login", "start:token_exchange", "exception:token_exchange:", "exception:login:token_exchange"}},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			t.Parallel()
			rec := &recorder{}
			e := newEnv(t, tc.opts, Config{Trace: rec.trace()})
			e.follow(e.get(e.app.URL+"/", html))
			got := rec.take()
			i := slices.Index(got, "start:login")
			if i < 0 || !slices.Equal(got[i:], tc.want) {
				t.Errorf("events:\n got %v\nwant …%v", got, tc.want)
			}
			assertNoSecretsInEvents(t, e, rec)
		})
	}
}

func TestTraceInvalidClientAndRegistrationFailure(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	e := newEnv(t, devop.Options{Registration: func(st *int, b map[string]any) { *st = 400; clear(b); b["error"] = "invalid_client_metadata" }},
		Config{Trace: rec.trace()})
	resp := e.get(e.app.URL+"/", html)
	resp.Body.Close()
	want := []string{"start:login_start", "start:discovery", "stop:discovery", "start:registration",
		"exception:registration:", "exception:login_start:"}
	if got := rec.take(); !slices.Equal(got, want) {
		t.Errorf("events:\n got %v\nwant %v", got, want)
	}
}

// assertNoSecretsInEvents checks no event carries a client secret,
// registration access token, code or token.
func assertNoSecretsInEvents(t *testing.T, e *testEnv, rec *recorder) {
	t.Helper()
	var secrets []string
	for _, c := range e.op.Clients() {
		secrets = append(secrets, c.Secret, c.RegistrationAccessToken)
	}
	if form, _ := e.op.LastTokenRequest(); form != nil {
		secrets = append(secrets, form.Get("code"), form.Get("code_verifier"))
	}
	for _, ev := range rec.all {
		text := strings.Join([]string{ev.Issuer, ev.Tenant, ev.ClientID, ev.Reason}, " ")
		if ev.Err != nil {
			text += ev.Err.Error()
		}
		for _, s := range secrets {
			if s != "" && strings.Contains(text, s) {
				t.Errorf("event %s carries a secret", ev.Op)
			}
		}
	}
}

func TestStatus(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{SecretLifetime: time.Hour}, Config{})
	if s := e.rp.Status(); s.Ready || s.ClientID != "" || s.Issuer != e.op.Issuer() {
		t.Errorf("before first use: %+v", s)
	}
	if err := e.rp.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	s := e.rp.Status()
	c := e.op.Clients()[0]
	if !s.Ready || s.ClientID != c.ID || s.AuthMethod != "client_secret_basic" || s.SecretExpiresAt.IsZero() || s.LastError != "" {
		t.Errorf("after Ready: %+v", s)
	}
	b, _ := json.Marshal(s)
	if strings.Contains(string(b), c.Secret) || strings.Contains(string(b), c.RegistrationAccessToken) {
		t.Errorf("status shows a secret: %s", b)
	}

	down := newEnv(t, devop.Options{NoRegistration: true}, Config{})
	_ = down.rp.Ready(context.Background())
	if s := down.rp.Status(); s.Ready || !strings.Contains(s.LastError, "registration_endpoint") || s.RetryAt.IsZero() {
		t.Errorf("after a failure: %+v", s)
	}
}

// TestTraceInvalidClient: the token endpoint rejects the client; the login
// is rejected with reason invalid_client, the client replaced, and a new
// login started.
func TestTraceInvalidClient(t *testing.T) {
	t.Parallel()
	rec := &recorder{}
	e := newEnv(t, devop.Options{}, Config{Trace: rec.trace()})
	e.login("/")
	rec.take()
	e.browser.Jar, _ = cookiejar.New(nil)
	resp := e.get(e.app.URL+"/", html)
	resp.Body.Close()
	resp = e.get(resp.Header.Get("Location"), html)
	resp.Body.Close()
	e.op.ForgetClients()
	e.follow(e.get(resp.Header.Get("Location"), html))
	got := rec.take()
	want := []string{
		"start:login_start", "stop:login_start",
		"start:login", "start:token_exchange", "exception:token_exchange:",
		"start:registration_read", "exception:registration_read:", // confirmed gone
		"start:login_start", "start:registration", "stop:registration", "stop:login_start", // the login restarts
		"exception:login:invalid_client",
		"start:login", "start:token_exchange", "stop:token_exchange", "start:userinfo", "stop:userinfo", "stop:login",
	}
	if !slices.Equal(got, want) {
		t.Errorf("events:\n got %v\nwant %v", got, want)
	}
}
