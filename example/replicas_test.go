package main

import (
	"bytes"
	"encoding/json"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// replicaProc is one example process started by a replica test.
type replicaProc struct {
	args []string
	base string // http://127.0.0.1:PORT
	cmd  *exec.Cmd
	out  *replicaLog
	done chan struct{} // closed when the process has exited
}

// replicaLog collects a process's output.
type replicaLog struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *replicaLog) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *replicaLog) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// startReplica runs the example binary at addr with args and waits until it
// answers.
func startReplica(t *testing.T, bin, addr string, args ...string) *replicaProc {
	t.Helper()
	p := &replicaProc{args: args, base: "http://" + addr, out: &replicaLog{}, done: make(chan struct{})}
	p.cmd = exec.Command(bin, append([]string{"-addr", addr, "-public-url", p.base}, args...)...)
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.cmd.Wait(); close(p.done) }()
	t.Cleanup(func() { p.stop() })
	deadline := time.Now().Add(20 * time.Second)
	for {
		resp, err := http.Get(p.base + "/me") // 401 without a session: no setup yet
		if err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("the example at %s exited: %s", addr, p.out)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the example at %s does not answer: %v\n%s", addr, err, p.out)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the process and waits for it.
func (p *replicaProc) stop() {
	select {
	case <-p.done:
	default:
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

// replicaBrowser is a fresh browser: its own cookies, redirects followed
// (the provider signs in without a page).
func replicaBrowser() *http.Client {
	jar, _ := cookiejar.New(nil)
	return &http.Client{Jar: jar, Timeout: 15 * time.Second}
}

// replicaSignIn signs a fresh browser in at p; t fails if it does not end
// on /me as the demo user.
func replicaSignIn(t *testing.T, p *replicaProc) {
	t.Helper()
	finishSignIn(t, p, replicaBrowser(), p.base+"/me")
}

// finishSignIn navigates b to target and checks it ends on /me as the demo
// user.
func finishSignIn(t *testing.T, p *replicaProc, b *http.Client, target string) {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, target, nil)
	req.Header.Set("Accept", "text/html")
	resp, err := b.Do(req)
	if err != nil {
		t.Fatalf("sign-in at %s: %v\n%s", p.base, err, p.out)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	var me struct {
		Sub string `json:"sub"`
	}
	if resp.StatusCode != http.StatusOK || json.Unmarshal(body, &me) != nil || me.Sub != "demo-user" {
		t.Fatalf("sign-in at %s ended at %s with %d: %.300s\nits log:\n%s", p.base, resp.Request.URL, resp.StatusCode, body, p.out)
	}
}

// TestExampleReplicasWithTwoPublicURLs runs two example processes sharing
// one file store and one provider, reached at two public URLs: both keep
// signing users in over several rounds, a login started at the first before
// the second appears still completes, a restart changes nothing, and the
// registration is updated once (to add the second URL), never back and
// forth.
func TestExampleReplicasWithTwoPublicURLs(t *testing.T) {
	op, stopOP, err := devop.Start("127.0.0.1:0", "", devop.Options{AutoLogin: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopOP)
	bin := buildExample(t)
	store := "file:" + filepath.Join(t.TempDir(), "oidc.json")
	args := []string{"-issuer", op.Issuer(), "-store", store}

	addrA := freeAddr(t)
	a := startReplica(t, bin, addrA, args...)
	replicaSignIn(t, a)

	// A browser on its way through the provider to a when b starts.
	inflight := replicaBrowser()
	inflight.CheckRedirect = func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }
	req, _ := http.NewRequest(http.MethodGet, a.base+"/me", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := inflight.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	toProvider := resp.Header.Get("Location")
	if resp.StatusCode != http.StatusFound || !strings.HasPrefix(toProvider, op.Issuer()) {
		t.Fatalf("login start at a: %d to %q", resp.StatusCode, toProvider)
	}

	b := startReplica(t, bin, freeAddr(t), args...)
	replicaSignIn(t, b)
	inflight.CheckRedirect = nil
	finishSignIn(t, a, inflight, toProvider)

	for round := range 5 {
		for range 3 {
			replicaSignIn(t, a)
			replicaSignIn(t, b)
		}
		if round == 2 { // a restarts: it finds the registration it needs
			a.stop()
			a = startReplica(t, bin, addrA, args...)
		}
	}

	s := op.Stats()
	if s.Registration != 1 || s.RegistrationUpdate != 1 {
		t.Errorf("%d registrations and %d RFC 7592 updates, want 1 and 1 (adding the second URL)\nlog of a:\n%s\nlog of b:\n%s",
			s.Registration, s.RegistrationUpdate, a.out, b.out)
	}
	clients := op.Clients()
	if len(clients) != 1 {
		t.Fatalf("%d clients at the provider", len(clients))
	}
	for _, p := range []*replicaProc{a, b} {
		if !slices.Contains(clients[0].RedirectURIs, p.base+"/auth/callback") {
			t.Errorf("registered redirect_uris %q lack %s", clients[0].RedirectURIs, p.base)
		}
		if strings.Contains(p.out.String(), "level=ERROR") {
			t.Errorf("errors logged by %s:\n%s", p.base, p.out)
		}
	}
}
