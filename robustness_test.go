package oidcrp

import (
	"context"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// authorizeHops counts the hops of a login that went to the provider's
// authorization endpoint.
func authorizeHops(hops []*http.Response) int {
	n := 0
	for _, h := range hops {
		if h.Request.URL.Path == "/authorize" {
			n++
		}
	}
	return n
}

// loginOnce signs a new browser in and fails the test unless it took
// exactly one trip to the provider.
func (e *testEnv) loginOnce(path string) {
	e.t.Helper()
	e.browser.Jar, _ = cookiejar.New(nil)
	hops := e.follow(e.get(e.app.URL+path, html))
	last := hops[len(hops)-1]
	last.Body.Close()
	if last.StatusCode != http.StatusOK || authorizeHops(hops) != 1 {
		e.t.Fatalf("login ended with %d after %d trips to the provider\nlogs:\n%s", last.StatusCode, authorizeHops(hops), e.logs)
	}
}

// TestUndecodedBasicCredentials: a provider that compares HTTP Basic
// credentials without form-decoding them (RFC 6749 §2.3.1 says both sides
// encode), with secrets that encoding changes. Every fresh registration
// logs in at its first attempt, learns how to send the secret, and keeps it
// in the store for the next process.
func TestUndecodedBasicCredentials(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{RawBasic: true, AwkwardSecrets: true, AuthMethods: []string{"client_secret_basic"}}, Config{})
	for i := range 20 {
		store := new(MemoryStore)
		rp := e.newRP(Config{Store: store})
		e.app.Config.Handler = e.handler(rp)
		before := e.op.Stats()
		e.loginOnce("/")
		after := e.op.Stats()
		if regs := after.Registration - before.Registration; regs != 1 {
			t.Fatalf("registration %d: %d registrations for one login", i, regs)
		}
		if i > 0 {
			continue
		}
		// The way that worked is stored: a restart sends it at once.
		b, err := store.Load(context.Background(), rp.cfg.StoreKey)
		var stored struct {
			AuthStyle string `json:"auth_style"`
		}
		if err != nil || json.Unmarshal(b, &stored) != nil || stored.AuthStyle != styleRawBasic {
			t.Fatalf("stored auth style %q (%v), want %q", stored.AuthStyle, err, styleRawBasic)
		}
		restarted := e.newRP(Config{Store: store})
		e.app.Config.Handler = e.handler(restarted)
		tokens := e.op.Stats().Token
		e.loginOnce("/")
		if s := e.op.Stats(); s.Token-tokens != 1 || s.Registration != after.Registration {
			t.Fatalf("after a restart: %d token requests, %d registrations; want 1 and none new", s.Token-tokens, s.Registration-after.Registration)
		}
	}
}

// TestUndecodedBasicFallsBackToPost: where raw HTTP Basic is refused too,
// the form body is tried when the provider supports client_secret_post.
func TestUndecodedBasicFallsBackToPost(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{AwkwardSecrets: true, AnyAuthMethod: true}, Config{})
	// The provider refuses Basic credentials in either encoding for this
	// client, as one whose Basic parser breaks on these characters would.
	e.rp = e.newRP(Config{HTTPClient: refuseBasic(e.opSrv.Client())})
	e.app.Config.Handler = e.handler(e.rp)
	e.loginOnce("/")
	if c := e.rp.lc.cur.Load(); c.creds.AuthStyle != stylePost {
		t.Errorf("auth style %q, want %q", c.creds.AuthStyle, stylePost)
	}
}

// refuseBasic answers every token request that uses HTTP Basic with
// invalid_client, without asking the provider.
func refuseBasic(c *http.Client) *http.Client {
	cp := *c
	next := c.Transport
	cp.Transport = roundTripFunc(func(r *http.Request) (*http.Response, error) {
		if _, _, basic := r.BasicAuth(); basic && strings.HasSuffix(r.URL.Path, "/token") {
			rec := httptestResponse(http.StatusUnauthorized, `{"error":"invalid_client","error_description":"bad credentials"}`)
			rec.Request = r
			return rec, nil
		}
		return next.RoundTrip(r)
	})
	return &cp
}

type roundTripFunc func(*http.Request) (*http.Response, error)

func (f roundTripFunc) RoundTrip(r *http.Request) (*http.Response, error) { return f(r) }

func httptestResponse(status int, body string) *http.Response {
	return &http.Response{
		StatusCode: status, Status: http.StatusText(status), Proto: "HTTP/1.1", ProtoMajor: 1, ProtoMinor: 1,
		Header: http.Header{"Content-Type": {"application/json"}},
		Body:   io.NopCloser(strings.NewReader(body)), ContentLength: int64(len(body)),
	}
}

// TestRefusedReplacementDoesNotLoop: a provider that refuses every client
// it registers (here: it answers registrations with a secret it does not
// accept) and offers no RFC 7592 endpoint to tell a forgotten client from a
// refused one. One extra registration, then errors that say where to look,
// never a loop of registrations.
func TestRefusedReplacementDoesNotLoop(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{Registration: func(status *int, body map[string]any) {
		body["client_secret"] = "not-the-secret"
		delete(body, "registration_client_uri")
		delete(body, "registration_access_token")
	}}, Config{})
	for range 3 {
		e.browser.Jar, _ = cookiejar.New(nil)
		if status, _ := e.attempt("/"); status != http.StatusBadGateway {
			t.Fatalf("login ended with %d, want 502", status)
		}
		e.clock.Advance(reregisterEvery + time.Second)
	}
	if s := e.op.Stats(); s.Registration != 2 {
		t.Errorf("%d registrations, want 2 (one replacement in the episode)", s.Registration)
	}
	if !strings.Contains(e.logs.String(), "points at the provider or the client authentication") {
		t.Errorf("no log line says where to look:\n%s", e.logs)
	}
}

// TestRestartedProviderHealsEveryBrowser: after a provider restart that
// forgot every client, a browser's login fails at the provider's own page
// and never comes back. Logins starting a few seconds later, in other
// browsers, verify the client first and work at their first attempt.
func TestRestartedProviderHealsEveryBrowser(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	e.login("/")
	e.op.ForgetClients()
	e.browser.Jar, _ = cookiejar.New(nil)
	hops := e.follow(e.get(e.app.URL+"/", html)) // ends on the provider's error page
	if last := hops[len(hops)-1]; last.StatusCode == http.StatusOK && last.Request.URL.Host == strings.TrimPrefix(e.app.URL, "https://") {
		t.Fatal("the login with a forgotten client completed")
	}
	e.clock.Advance(loginLostAfter + time.Second)
	for range 10 {
		e.loginOnce("/")
	}
	if s := e.op.Stats(); s.Registration != 2 {
		t.Errorf("%d registrations, want 2", s.Registration)
	}
}
