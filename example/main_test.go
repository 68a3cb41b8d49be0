package main

import (
	"context"
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
)

// start runs the example with args on a free loopback address and returns
// its base URL once it answers.
func start(t *testing.T, args ...string) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("ADDR", addr)
	exited := make(chan error, 1)
	go func() { exited <- run(args) }()
	base := "http://" + addr
	const wait = 20 * time.Second
	deadline := time.Now().Add(wait)
	for {
		resp, err := http.Get(base + "/")
		if err == nil {
			resp.Body.Close()
			return base
		}
		select {
		case runErr := <-exited:
			t.Fatalf("the example (args %q) exited before answering GET %s/: run returned %v", args, base, runErr)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the example (args %q) did not answer GET %s/ within %v; last error: %v", args, base, wait, err)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// browser is a cookie-keeping client that follows redirects.
type browser struct {
	t *testing.T
	c *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, _ := cookiejar.New(nil)
	return &browser{t: t, c: &http.Client{Jar: jar, Timeout: 10 * time.Second}}
}

func (b *browser) do(req *http.Request) (*http.Response, string) {
	b.t.Helper()
	resp, err := b.c.Do(req)
	if err != nil {
		b.t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

func (b *browser) get(u, accept string) (*http.Response, string) {
	req, _ := http.NewRequest(http.MethodGet, u, nil)
	req.Header.Set("Accept", accept)
	return b.do(req)
}

type meJSON struct {
	Sub    string         `json:"sub"`
	Iss    string         `json:"iss"`
	Claims map[string]any `json:"claims"`
}

// signIn navigates to target, clicks the development provider's one-click
// sign-in, and returns what /me reported at the end.
func (b *browser) signIn(target string) meJSON {
	b.t.Helper()
	resp, page := b.get(target, "text/html")
	if !strings.Contains(page, "not for production") {
		b.t.Fatalf("expected the development provider's page, got %d %s", resp.StatusCode, page)
	}
	action := regexp.MustCompile(`action="([^"]+)"`).FindStringSubmatch(page)
	reqID := regexp.MustCompile(`name="request_id" value="([^"]+)"`).FindStringSubmatch(page)
	if action == nil || reqID == nil {
		b.t.Fatalf("no one-click form: %s", page)
	}
	next, _ := resp.Request.URL.Parse(strings.ReplaceAll(action[1], "&amp;", "&"))
	post, _ := http.NewRequest(http.MethodPost, next.String(), strings.NewReader(url.Values{"request_id": {reqID[1]}}.Encode()))
	post.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, body := b.do(post)
	var m meJSON
	if err := json.Unmarshal([]byte(body), &m); err != nil {
		b.t.Fatalf("after sign-in: %d %s", resp.StatusCode, body)
	}
	return m
}

// TestExampleOutOfTheBox runs the example with no flags (but a free address)
// and uses it as a browser would: sign in through the embedded development
// provider's one-click page, read /me, sign out.
func TestExampleOutOfTheBox(t *testing.T) {
	base := start(t)
	b := newBrowser(t)

	// Without a session: API clients get 401, a browser lands on the provider's page.
	if resp, _ := b.get(base+"/me", "application/json"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/me as API without session: %d", resp.StatusCode)
	}
	if m := b.signIn(base + "/me"); m.Sub != "demo-user" || m.Claims["email"] == nil {
		t.Fatalf("after sign-in /me answered %+v", m)
	}
	// Signed in, /me answers JSON whatever the Accept header.
	if resp, body := b.get(base+"/me", "text/html"); resp.StatusCode != 200 || !strings.Contains(body, `"sub":"demo-user"`) {
		t.Fatalf("/me with session: %d %s", resp.StatusCode, body)
	}
	if resp, body := b.get(base+"/", "text/html"); resp.StatusCode != 200 || !strings.Contains(body, "Demo User") {
		t.Fatalf("/: %d %s", resp.StatusCode, body)
	}
	// Sign out: the provider session ends too, so the next visit shows its page again.
	logout, _ := http.NewRequest(http.MethodPost, base+"/logout", nil)
	logout.Header.Set("Origin", base)
	if _, body := b.do(logout); !strings.Contains(body, "signed out") {
		t.Fatalf("logout ended with: %s", body)
	}
	if _, body := b.get(base+"/", "text/html"); !strings.Contains(body, "not for production") {
		t.Fatalf("after logout the provider did not ask again: %s", body)
	}
}

// TestExampleRedisStore runs the example with -store redis://… against the
// redis-server the test script starts and signs in.
func TestExampleRedisStore(t *testing.T) {
	addr := os.Getenv("OIDCRP_REDIS_ADDR")
	if addr == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("OIDCRP_REDIS_ADDR is not set: run ./scripts/test.sh, which starts redis-server")
		}
		t.Skip("OIDCRP_REDIS_ADDR not set; ./scripts/test.sh starts redis-server")
	}
	base := start(t, "-store", "redis://"+addr+"/0")
	if m := newBrowser(t).signIn(base + "/me"); m.Sub != "demo-user" {
		t.Fatalf("signed in as %+v", m)
	}
}

// TestExampleTenants runs the path-routed multi-tenant mode: each tenant
// signs in at its own embedded provider.
func TestExampleTenants(t *testing.T) {
	base := start(t, "-tenants", "acme,globex")
	b := newBrowser(t)
	acme, globex := b.signIn(base+"/t/acme/me"), b.signIn(base+"/t/globex/me")
	if acme.Sub != "demo-user" || globex.Sub != "demo-user" || acme.Iss == globex.Iss {
		t.Errorf("tenants signed in as %+v and %+v, want two providers", acme, globex)
	}
}

// TestExampleAuthMethod: out of the box the example registers at its
// embedded provider with private_key_jwt, and the store holds no client
// secret; -auth-method (or OIDC_AUTH_METHOD) forces another method.
func TestExampleAuthMethod(t *testing.T) {
	for _, tc := range []struct {
		args       []string
		method     string
		withSecret bool
	}{
		{nil, "private_key_jwt", false},
		{[]string{"-auth-method", "client_secret_post"}, "client_secret_post", true},
	} {
		t.Run(tc.method, func(t *testing.T) {
			path := filepath.Join(t.TempDir(), "oidc.json")
			base := start(t, append([]string{"-store", "file:" + path}, tc.args...)...)
			if m := newBrowser(t).signIn(base + "/me"); m.Sub != "demo-user" {
				t.Fatalf("signed in as %+v", m)
			}
			raw, err := oidcrp.NewFileStore(path).Load(context.Background(), "oidcrp:client")
			if err != nil {
				t.Fatal(err)
			}
			var stored struct {
				ClientSecret string `json:"client_secret"`
				Metadata     struct {
					Method string `json:"token_endpoint_auth_method"`
				} `json:"metadata"`
			}
			if err := json.Unmarshal(raw, &stored); err != nil {
				t.Fatal(err)
			}
			if stored.Metadata.Method != tc.method || (stored.ClientSecret != "") != tc.withSecret {
				t.Errorf("stored method %q, secret stored %v; want %q, %v", stored.Metadata.Method, stored.ClientSecret != "", tc.method, tc.withSecret)
			}
		})
	}
}
