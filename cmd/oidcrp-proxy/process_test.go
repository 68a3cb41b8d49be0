package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"
)

// proxyBin is the oidcrp-proxy binary the tests run, built once by TestMain.
var proxyBin string

func TestMain(m *testing.M) {
	if runBareProxy() {
		return
	}
	dir, err := os.MkdirTemp("", "oidcrp-proxy-test")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	proxyBin = filepath.Join(dir, "oidcrp-proxy")
	goTool, err := exec.LookPath("go")
	if err != nil {
		goTool = filepath.Join(runtime.GOROOT(), "bin", "go")
	}
	if out, err := exec.Command(goTool, "build", "-o", proxyBin, ".").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building oidcrp-proxy: %v: %s\n", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// freeAddr returns a loopback address with a port nothing listens on.
func freeAddr(t *testing.T) string {
	t.Helper()
	l, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer l.Close()
	return l.Addr().String()
}

// syncBuffer collects a process's output.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *syncBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *syncBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// proc is a running oidcrp-proxy.
type proc struct {
	base string // http://127.0.0.1:PORT
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{}
}

// startProxy runs the binary on a free loopback address (unless args set
// -addr) and waits until /ping answers. It is stopped when the test ends.
func startProxy(t *testing.T, args ...string) *proc {
	t.Helper()
	return startProxyEnv(t, nil, args...)
}

// startProxyEnv is startProxy with environment variables (NAME=value)
// added to the clean environment.
func startProxyEnv(t *testing.T, env []string, args ...string) *proc {
	t.Helper()
	addr := ""
	for i, a := range args {
		if a == "-addr" && i+1 < len(args) {
			addr = args[i+1]
		}
	}
	if addr == "" {
		addr = freeAddr(t)
		args = append([]string{"-addr", addr}, args...)
	}
	p := &proc{base: "http://" + addr, out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd = exec.Command(proxyBin, args...)
	p.cmd.Env = append(cleanEnv(), env...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		p.cmd.Process.Signal(os.Interrupt)
		select {
		case <-p.done:
		case <-time.After(10 * time.Second):
			p.cmd.Process.Kill()
			<-p.done
		}
		if t.Failed() {
			t.Logf("oidcrp-proxy %v log:\n%s", args, p.out)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.base + "/ping")
		if err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("oidcrp-proxy %v exited: %s", args, p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("oidcrp-proxy %v does not answer: %v\n%s", args, err, p.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// cleanEnv is the test's environment without the proxy's fallbacks, so
// that only the flags configure it.
func cleanEnv() []string {
	var env []string
	for _, kv := range os.Environ() {
		name, _, _ := strings.Cut(kv, "=")
		switch name {
		case "OIDC_ISSUER", "UPSTREAM", "ADDR", "PUBLIC_URL", "CREDENTIAL_STORE", "STORE_KEY", "OIDC_INITIAL_ACCESS_TOKEN",
			"OIDC_SCOPES", "PUBLIC_PATHS", "ALLOWED_EMAIL_DOMAINS", "ALLOWED_EMAILS", "ALLOWED_GROUPS", "ALLOWED_CLAIMS",
			"GROUPS_CLAIM", "DEV", "PASS_ACCESS_TOKEN", "PASS_HOST_HEADER", "METRICS_ADDR", "PASS_AUTHORIZATION_HEADER", "TENANTS":
			continue
		}
		env = append(env, kv)
	}
	return env
}

// echoed is what the echo upstream received.
type echoed struct {
	Method  string      `json:"method"`
	URI     string      `json:"uri"`
	Host    string      `json:"host"`
	Headers http.Header `json:"headers"`
}

// newUpstream starts an upstream that answers every request with what it
// received, as JSON.
func newUpstream(t *testing.T) *httptest.Server {
	t.Helper()
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		_ = json.NewEncoder(w).Encode(echoed{Method: r.Method, URI: r.RequestURI, Host: r.Host, Headers: r.Header})
	}))
	t.Cleanup(srv.Close)
	return srv
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

// get sends a GET with the Accept header and any extra headers (name,
// value pairs).
func (b *browser) get(u, accept string, headers ...string) (*http.Response, string) {
	b.t.Helper()
	req, err := http.NewRequest(http.MethodGet, u, nil)
	if err != nil {
		b.t.Fatal(err)
	}
	req.Header.Set("Accept", accept)
	for i := 0; i+1 < len(headers); i += 2 {
		req.Header[headers[i]] = append(req.Header[headers[i]], headers[i+1])
	}
	return b.do(req)
}

// signIn navigates to target (with extra headers), clicks the development
// provider's one-click sign-in, and returns where it ended.
func (b *browser) signIn(target string, headers ...string) (*http.Response, string) {
	b.t.Helper()
	resp, page := b.get(target, "text/html", headers...)
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
	post.Header.Set("Accept", "text/html")
	return b.do(post)
}

// decodeEcho decodes the echo upstream's answer.
func decodeEcho(t *testing.T, resp *http.Response, body string) echoed {
	t.Helper()
	var e echoed
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &e) != nil {
		t.Fatalf("expected the upstream's echo, got %d %s", resp.StatusCode, body)
	}
	return e
}

// newTestServer serves h on a loopback port until the test ends and returns
// its URL.
func newTestServer(t *testing.T, h http.Handler) string {
	t.Helper()
	srv := httptest.NewServer(h)
	t.Cleanup(func() { srv.CloseClientConnections(); srv.Close() })
	return srv.URL
}
