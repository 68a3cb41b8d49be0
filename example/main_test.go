package main

import (
	"encoding/json"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"os"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestExampleOutOfTheBox runs the example with no flags but a free address
// and signs in through the embedded development provider's one-click page,
// as a browser would.
func TestExampleOutOfTheBox(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	t.Setenv("ADDR", addr)
	go func() { _ = run(nil) }()
	base := "http://" + addr
	waitUp(t, base)

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	get := func(u, accept string) (*http.Response, string) {
		req, _ := http.NewRequest(http.MethodGet, u, nil)
		req.Header.Set("Accept", accept)
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		return resp, string(b)
	}

	// Without a session: API clients get 401, a browser lands on the provider's sign-in page.
	if resp, _ := get(base+"/me", "application/json"); resp.StatusCode != http.StatusUnauthorized {
		t.Fatalf("/me as API without session: %d", resp.StatusCode)
	}
	resp, body := get(base+"/me", "text/html")
	if !strings.Contains(body, "not for production") {
		t.Fatalf("expected the development provider's page, got %d %s", resp.StatusCode, body)
	}
	action := regexp.MustCompile(`action="([^"]+)"`).FindStringSubmatch(body)
	reqID := regexp.MustCompile(`name="request_id" value="([^"]+)"`).FindStringSubmatch(body)
	if action == nil || reqID == nil {
		t.Fatalf("no one-click form: %s", body)
	}
	target, _ := resp.Request.URL.Parse(strings.ReplaceAll(action[1], "&amp;", "&"))
	post, err := browser.PostForm(target.String(), url.Values{"request_id": {reqID[1]}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(post.Body)
	post.Body.Close()
	var me struct {
		Sub    string         `json:"sub"`
		Iss    string         `json:"iss"`
		Claims map[string]any `json:"claims"`
	}
	if err := json.Unmarshal(b, &me); err != nil || me.Sub != "demo-user" || me.Claims["email"] == nil {
		t.Fatalf("after sign-in /me answered %d %s", post.StatusCode, b)
	}
	// Signed in, /me answers JSON whatever the Accept header.
	if resp, body := get(base+"/me", "text/html"); resp.StatusCode != 200 || !strings.Contains(body, `"sub":"demo-user"`) {
		t.Fatalf("/me with session: %d %s", resp.StatusCode, body)
	}
	if resp, body := get(base+"/", "text/html"); resp.StatusCode != 200 || !strings.Contains(body, "Demo User") {
		t.Fatalf("/: %d %s", resp.StatusCode, body)
	}
	// Sign out: the provider session ends too, so the next visit shows its page again.
	form, err := http.NewRequest(http.MethodPost, base+"/logout", nil)
	if err != nil {
		t.Fatal(err)
	}
	form.Header.Set("Origin", base)
	resp, err = browser.Do(form)
	if err != nil {
		t.Fatal(err)
	}
	b, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), "signed out") {
		t.Fatalf("logout ended at %s: %s", resp.Request.URL, b)
	}
	if _, body := get(base+"/", "text/html"); !strings.Contains(body, "not for production") {
		t.Fatalf("after logout the provider did not ask again: %s", body)
	}
}

func waitUp(t *testing.T, base string) {
	deadline := time.Now().Add(20 * time.Second)
	for time.Now().Before(deadline) {
		if resp, err := http.Get(base + "/"); err == nil {
			resp.Body.Close()
			return
		}
		time.Sleep(50 * time.Millisecond)
	}
	t.Fatal("example did not start")
}

// TestExampleRedisStore runs the example with -store redis://… against the
// redis-server the test script starts, signs in, and finds the credentials
// in Redis.
func TestExampleRedisStore(t *testing.T) {
	addr := os.Getenv("OIDCRP_REDIS_ADDR")
	if addr == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("OIDCRP_REDIS_ADDR is not set: run ./scripts/test.sh, which starts redis-server")
		}
		t.Skip("OIDCRP_REDIS_ADDR not set; ./scripts/test.sh starts redis-server")
	}
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	app := l.Addr().String()
	l.Close()
	go func() { _ = run([]string{"-addr", app, "-store", "redis://" + addr + "/0"}) }()
	base := "http://" + app
	waitUp(t, base)
	if sub := signIn(t, base+"/me"); sub != "demo-user" {
		t.Fatalf("signed in as %q", sub)
	}
}

// signIn follows a browser navigation to target through the development
// provider's one-click page and returns the subject /me reports.
func signIn(t *testing.T, target string) string {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := browser.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	page, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	action := regexp.MustCompile(`action="([^"]+)"`).FindStringSubmatch(string(page))
	reqID := regexp.MustCompile(`name="request_id" value="([^"]+)"`).FindStringSubmatch(string(page))
	if action == nil || reqID == nil {
		t.Fatalf("no one-click form: %d %s", resp.StatusCode, page)
	}
	next, _ := resp.Request.URL.Parse(strings.ReplaceAll(action[1], "&amp;", "&"))
	post, err := browser.PostForm(next.String(), url.Values{"request_id": {reqID[1]}})
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(post.Body)
	post.Body.Close()
	var me struct{ Sub string }
	if err := json.Unmarshal(b, &me); err != nil {
		t.Fatalf("after sign-in: %d %s", post.StatusCode, b)
	}
	return me.Sub
}

// TestExampleTenants runs the path-routed multi-tenant mode: each tenant
// signs in at its own embedded provider, and one tenant's session does not
// open the other's pages.
func TestExampleTenants(t *testing.T) {
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := l.Addr().String()
	l.Close()
	go func() { _ = run([]string{"-addr", addr, "-tenants", "acme,globex"}) }()
	base := "http://" + addr
	waitUp(t, base+"/t/acme")

	jar, _ := cookiejar.New(nil)
	browser := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	issuers := map[string]string{}
	for _, tenant := range []string{"acme", "globex"} {
		req, _ := http.NewRequest(http.MethodGet, base+"/t/"+tenant+"/me", nil)
		req.Header.Set("Accept", "text/html")
		resp, err := browser.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		page, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		action := regexp.MustCompile(`action="([^"]+)"`).FindStringSubmatch(string(page))
		reqID := regexp.MustCompile(`name="request_id" value="([^"]+)"`).FindStringSubmatch(string(page))
		if action == nil || reqID == nil {
			t.Fatalf("%s: no one-click form: %s", tenant, page)
		}
		target, _ := resp.Request.URL.Parse(strings.ReplaceAll(action[1], "&amp;", "&"))
		post, err := browser.PostForm(target.String(), url.Values{"request_id": {reqID[1]}})
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(post.Body)
		post.Body.Close()
		var me struct{ Sub, Iss string }
		if err := json.Unmarshal(b, &me); err != nil || me.Sub != "demo-user" {
			t.Fatalf("%s: after sign-in %d %s", tenant, post.StatusCode, b)
		}
		issuers[tenant] = me.Iss
	}
	if issuers["acme"] == issuers["globex"] {
		t.Errorf("both tenants used one provider: %v", issuers)
	}
}
