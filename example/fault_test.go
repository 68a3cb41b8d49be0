//go:build linux

package main

import (
	"errors"
	"io"
	"net/http"
	"net/http/cookiejar"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// Fault tests run the example as a separate process, built from this
// package, against a development provider in the test process, whose
// counters show every registration across restarts of the example.

// skipOrFail skips the test, or fails it under CI=true, where every fault
// test must run.
func skipOrFail(t *testing.T, format string, args ...any) {
	t.Helper()
	if os.Getenv("CI") == "true" {
		t.Fatalf(format, args...)
	}
	t.Skipf(format, args...)
}

// mountTmpfs mounts a tmpfs of the given size (as mount's size= option) on
// a new directory and unmounts it when the test ends.
func mountTmpfs(t *testing.T, size string) string {
	t.Helper()
	if os.Geteuid() != 0 {
		skipOrFail(t, "mounting a tmpfs needs root; run as root (CI does)")
	}
	dir := t.TempDir()
	if out, err := exec.Command("mount", "-t", "tmpfs", "-o", "size="+size+",mode=0700", "tmpfs", dir).CombinedOutput(); err != nil {
		skipOrFail(t, "cannot mount a tmpfs on %s: %v: %s", dir, err, out)
	}
	t.Cleanup(func() {
		if out, err := exec.Command("umount", dir).CombinedOutput(); err != nil {
			t.Errorf("umount %s: %v: %s", dir, err, out)
		}
	})
	return dir
}

// fill writes the file at path until the file system is full.
func fill(t *testing.T, path string) {
	t.Helper()
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 64<<10)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("filling %s: %v", path, err)
			}
			break
		}
	}
	for _, n := range []int{4096, 1} { // the last partial pages
		for {
			if _, err := f.Write(chunk[:n]); err != nil {
				break
			}
		}
	}
	if err := os.WriteFile(filepath.Join(filepath.Dir(path), "probe"), []byte("x"), 0o600); !errors.Is(err, syscall.ENOSPC) {
		t.Fatalf("the file system is not full: writing a byte gave %v", err)
	}
}

// exampleProcess is a running example binary.
type exampleProcess struct {
	t    *testing.T
	cmd  *exec.Cmd
	base string
	logs *lockedBuffer
	done chan struct{}
}

// startExample runs the example binary with args, listening on addr, and
// waits until it answers.
func startExample(t *testing.T, bin, addr string, logs *lockedBuffer, args ...string) *exampleProcess {
	t.Helper()
	cmd := exec.Command(bin, append([]string{"-addr", addr}, args...)...)
	cmd.Stdout, cmd.Stderr = logs, logs
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	p := &exampleProcess{t: t, cmd: cmd, base: "http://" + addr, logs: logs, done: make(chan struct{})}
	go func() { cmd.Wait(); close(p.done) }()
	t.Cleanup(p.stop)
	deadline := time.Now().Add(20 * time.Second)
	for {
		// A path outside the RP: answering it does not start a setup.
		resp, err := http.Get(p.base + "/health-unused")
		if err == nil {
			resp.Body.Close()
			return p
		}
		select {
		case <-p.done:
			t.Fatalf("the example exited before answering: %v\n%s", cmd.ProcessState, logs)
		default:
		}
		if time.Now().After(deadline) {
			t.Fatalf("the example did not answer within 20s: %v\n%s", err, logs)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// stop ends the process with SIGTERM, as a service manager would.
func (p *exampleProcess) stop() {
	select {
	case <-p.done:
		return
	default:
	}
	p.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-p.done:
	case <-time.After(10 * time.Second):
		p.cmd.Process.Kill()
		<-p.done
		p.t.Errorf("the example did not stop within 10s of SIGTERM")
	}
}

// attempt makes a browser's login attempt at /me, following redirects
// through the provider (which signs in without a page), and returns the
// final status and body.
func attempt(t *testing.T, base string) (int, string) {
	t.Helper()
	jar, _ := cookiejar.New(nil)
	c := &http.Client{Jar: jar, Timeout: 10 * time.Second}
	req, _ := http.NewRequest(http.MethodGet, base+"/me", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	body, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(body)
}

// waitLog waits until the process's output, which reaches logs through a
// pipe, contains substr.
func waitLog(t *testing.T, logs *lockedBuffer, substr string) {
	t.Helper()
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(logs.String(), substr) {
		if time.Now().After(deadline) {
			t.Fatalf("no log line containing %q within 5s:\n%s", substr, logs)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// TestFaultFullDiskAtFirstRegistration: the file store's disk is full at the
// first login. The example must refuse it (503) without registering a client
// it could not keep; once space is freed a login registers, and a restart
// on the same store reuses that client: one registration in all.
func TestFaultFullDiskAtFirstRegistration(t *testing.T) {
	t.Parallel()
	dir := mountTmpfs(t, "1m")
	filler := filepath.Join(dir, "filler")
	fill(t, filler)

	op, stopOP, err := devop.Start("127.0.0.1:0", "", devop.Options{AutoLogin: true})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(stopOP)
	addr := freeAddr(t)
	args := []string{"-issuer", op.Issuer(), "-store", "file:" + filepath.Join(dir, "creds.json")}
	logs := &lockedBuffer{}
	bin := buildExample(t)
	app := startExample(t, bin, addr, logs, args...)

	status, body := attempt(t, app.base)
	if status != http.StatusServiceUnavailable {
		t.Fatalf("login with a full disk: %d %s, want 503\n%s", status, body, logs)
	}
	if n := op.Stats().Registration; n != 0 {
		t.Fatalf("%d registrations with a full disk, want 0: the client could not be kept\n%s", n, logs)
	}
	waitLog(t, logs, "credential store cannot be written")
	if !strings.Contains(logs.String(), "no space left on device") {
		t.Errorf("the refusal is not logged with its cause:\n%s", logs)
	}

	if err := os.Remove(filler); err != nil {
		t.Fatal(err)
	}
	os.Remove(filepath.Join(dir, "probe"))
	deadline := time.Now().Add(15 * time.Second) // past the setup's backoff
	for {
		if status, body = attempt(t, app.base); status == http.StatusOK {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("no login after space was freed: %d %s\n%s", status, body, logs)
		}
		time.Sleep(250 * time.Millisecond)
	}
	if !strings.Contains(body, `"sub":"demo-user"`) {
		t.Fatalf("after login /me answered %s", body)
	}
	app.stop()

	restartLogs := &lockedBuffer{}
	app = startExample(t, bin, addr, restartLogs, args...)
	if status, body := attempt(t, app.base); status != http.StatusOK {
		t.Fatalf("login after the restart: %d %s\n%s", status, body, restartLogs)
	}
	if s := op.Stats(); s.Registration != 1 {
		t.Errorf("%d registrations in all, want 1\nfirst run:\n%s\nafter the restart:\n%s", s.Registration, logs, restartLogs)
	}
	if clients := op.Clients(); len(clients) != 1 {
		t.Errorf("%d clients at the provider, want 1", len(clients))
	}
	app.stop() // all its output read
	for _, l := range []string{logs.String(), restartLogs.String()} {
		if strings.Contains(l, "live in this process only") || strings.Contains(l, "without a stored result") {
			t.Errorf("credentials were not stored, or a registration was lost:\n%s", l)
		}
	}
}
