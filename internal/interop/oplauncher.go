// Package interop runs a real OpenID Provider (panva's oidc-provider, the
// version pinned in package.json next to this file) for integration tests.
//
// Start launches provider.mjs with Node.js and returns once it listens. The
// provider logs in a fixed test user and grants consent without any page, so
// an http.Client with a cookie jar completes an authorization request by
// following redirects; see provider.mjs for every behaviour a client sees.
package interop

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
)

// The fixed user that the provider logs in.
const (
	TestUserSub   = "test-user"
	TestUserName  = "Test User"
	TestUserEmail = "test@example.test"
)

// TestUserGroups is the value of the "groups" claim of the test user.
var TestUserGroups = []string{"staff", "dev"}

// ReadyTimeout bounds how long Start and Restart wait for the provider.
const ReadyTimeout = 30 * time.Second

// Options configures a provider. The zero value is an open-registration
// provider at http://127.0.0.1:<free port>.
type Options struct {
	// PathPrefix is appended to the issuer, e.g. "/oidc" gives
	// http://127.0.0.1:PORT/oidc. It must start with "/" and not end with "/".
	PathPrefix string
	// InitialAccessToken, when set, is required as a bearer token by the
	// registration endpoint (RFC 7591 section 3).
	InitialAccessToken string
	// SecretLifetime, when positive, makes client secrets expire that long
	// after registration or after an RFC 7592 update (which issues a new
	// secret). Rounded up to whole seconds.
	SecretLifetime time.Duration
	// AccessTokenTTL and IDTokenTTL default to one hour. Rounded up to whole
	// seconds.
	AccessTokenTTL time.Duration
	IDTokenTTL     time.Duration
	// Port is the TCP port on 127.0.0.1; 0 picks a free one.
	Port int
	// FormLogout makes the end_session endpoint answer with an HTML form that
	// the client must POST (hidden inputs xsrf and logout) instead of the
	// default redirect-only confirmation.
	FormLogout bool
	// KeepRegistrationAccessToken stops RFC 7592 updates from replacing the
	// registration access token (by default every PUT returns a new one and
	// the old one stops working).
	KeepRegistrationAccessToken bool
	// IDTokenScopeClaims also puts the claims of the granted scopes (name,
	// email, groups, ...) in ID tokens; by default they are only returned by
	// the userinfo endpoint.
	IDTokenScopeClaims bool
	// BackchannelLogout enables OpenID Connect Back-Channel Logout 1.0: at
	// a confirmed logout, the provider POSTs a logout token to every client
	// of the provider session that registered a backchannel_logout_uri
	// (loopback URIs included).
	BackchannelLogout bool
	// RequirePAR makes the provider require pushed authorization requests
	// (RFC 9126): discovery says require_pushed_authorization_requests and
	// the authorization endpoint refuses requests that were not pushed. The
	// provider logs "pushed_authorization_request.success: client=<id>" for
	// every pushed request it accepts. By default PAR is offered, not
	// required.
	RequirePAR bool
	// DPoPNonce makes the provider require its nonce in DPoP proofs
	// (use_dpop_nonce otherwise). DPoP itself is always on; the provider
	// logs "access_token.saved: client=<id> dpop=bound|none" for every
	// access token it issues.
	DPoPNonce bool
	// RequireRequestObjects makes the provider require signed request
	// objects (RFC 9101): discovery and every registration say
	// require_signed_request_object. Request objects are always accepted;
	// the provider logs "request_object: route=<route> client=<id> alg=<alg>
	// typ=<typ> kid=<kid>" for each one whose claims it checks.
	RequireRequestObjects bool
	// AuthMethods, when set, are the client authentication methods the
	// provider supports and advertises (token_endpoint_auth_methods_supported);
	// by default every method oidc-provider implements: client_secret_basic,
	// client_secret_post, client_secret_jwt, private_key_jwt and none. The
	// provider logs "client_assertion: route=<route> client=<id> alg=<alg>
	// kid=<kid> aud=<aud>" for each client assertion it verifies.
	AuthMethods []string
	// Encryption enables encrypted ID tokens and userinfo responses
	// (discovery lists id_token_encryption_* and userinfo_encryption_*): a
	// client that registers id_token_encrypted_response_alg
	// (userinfo_encrypted_response_alg) gets them as JWEs encrypted to a key
	// of its registered jwks.
	Encryption bool
	// ExtraArgs are appended to the provider.mjs command line.
	ExtraArgs []string
}

// OP is a running provider.
type OP struct {
	// Issuer is the issuer identifier, e.g. http://127.0.0.1:41234/oidc.
	Issuer string
	// Port is the port the provider listens on; Restart keeps it.
	Port int
	// InteractionURLPrefix is the start of the URL the provider redirects the
	// browser to when it needs a login or a consent (Issuer + "/interaction/").
	// An authorization request that does not pass through it was answered
	// from an existing provider session.
	InteractionURLPrefix string

	opts Options
	dir  string

	mu   sync.Mutex
	proc *process
	logs lockedBuffer // stderr of every process started so far
}

// Start runs a provider for the duration of the test. Without node on PATH,
// or without the npm packages installed in Dir()/node_modules (see
// RunHelp), the test is skipped, or fails when the CI environment variable
// is set.
func Start(t testing.TB, opts Options) *OP {
	t.Helper()
	dir := Dir()
	requireNode(t)
	requireNodeModules(t, dir)

	op := &OP{opts: opts, dir: dir, Port: opts.Port}
	t.Cleanup(func() {
		op.stop()
		if t.Failed() {
			t.Logf("provider stderr:\n%s", op.Logs())
		}
	})
	op.start(t)
	return op
}

// Restart stops the provider and starts a new one on the same port and with
// the same options. The new provider has new signing keys and has forgotten
// every client, grant, session and token.
func (op *OP) Restart(t testing.TB) {
	t.Helper()
	op.stop()
	op.start(t)
}

// Stop stops the provider before the end of the test (Restart starts it
// again). Stopping twice is harmless.
func (op *OP) Stop() { op.stop() }

// Logs returns what the provider wrote to stderr so far, across restarts.
func (op *OP) Logs() string { return op.logs.String() }

// LogsWith returns Logs once they hold substr at least n times, or after
// five seconds: the provider's lines reach the pipe as it answers, and may
// be read a moment after the answer that caused them.
func (op *OP) LogsWith(substr string, n int) string {
	for deadline := time.Now().Add(5 * time.Second); ; time.Sleep(20 * time.Millisecond) {
		if logs := op.Logs(); strings.Count(logs, substr) >= n || time.Now().After(deadline) {
			return logs
		}
	}
}

// Args returns the provider.mjs command-line flags for the options.
func (o Options) Args() []string {
	args := []string{"--port", strconv.Itoa(o.Port)}
	if o.PathPrefix != "" {
		args = append(args, "--path", o.PathPrefix)
	}
	if o.InitialAccessToken != "" {
		args = append(args, "--initial-access-token", o.InitialAccessToken)
	}
	secs := func(d time.Duration) string { return strconv.FormatInt(int64((d+time.Second-1)/time.Second), 10) }
	if o.SecretLifetime > 0 {
		args = append(args, "--secret-lifetime", secs(o.SecretLifetime))
	}
	if o.AccessTokenTTL > 0 {
		args = append(args, "--access-token-ttl", secs(o.AccessTokenTTL))
	}
	if o.IDTokenTTL > 0 {
		args = append(args, "--id-token-ttl", secs(o.IDTokenTTL))
	}
	if o.FormLogout {
		args = append(args, "--logout", "form")
	}
	if o.KeepRegistrationAccessToken {
		args = append(args, "--rotate-registration-access-token", "false")
	}
	if o.IDTokenScopeClaims {
		args = append(args, "--id-token-scope-claims")
	}
	if o.BackchannelLogout {
		args = append(args, "--backchannel-logout")
	}
	if o.RequirePAR {
		args = append(args, "--require-par")
	}
	if o.DPoPNonce {
		args = append(args, "--dpop-nonce")
	}
	if o.RequireRequestObjects {
		args = append(args, "--require-request-objects")
	}
	if len(o.AuthMethods) > 0 {
		args = append(args, "--auth-methods", strings.Join(o.AuthMethods, ","))
	}
	if o.Encryption {
		args = append(args, "--encryption")
	}
	return append(args, o.ExtraArgs...)
}

// Dir returns the directory that holds provider.mjs and package.json: the
// OIDCRP_INTEROP_DIR environment variable if set, else the directory of this
// source file, else the first internal/interop/ directory found walking up
// from the working directory.
func Dir() string {
	if d := os.Getenv("OIDCRP_INTEROP_DIR"); d != "" {
		return d
	}
	has := func(d string) bool {
		_, err := os.Stat(filepath.Join(d, "provider.mjs"))
		return err == nil
	}
	if _, file, _, ok := runtime.Caller(0); ok && has(filepath.Dir(file)) {
		return filepath.Dir(file)
	}
	if wd, err := os.Getwd(); err == nil {
		for d := wd; ; d = filepath.Dir(d) {
			if has(d) {
				return d
			}
			if has(filepath.Join(d, "internal", "interop")) {
				return filepath.Join(d, "internal", "interop")
			}
			if filepath.Dir(d) == d {
				break
			}
		}
	}
	return filepath.Join("internal", "interop")
}

type process struct {
	cmd  *exec.Cmd
	done chan struct{} // closed when the process has exited
}

func (op *OP) start(t testing.TB) {
	t.Helper()
	opts := op.opts
	opts.Port = op.Port

	// Drop OP_* variables so that only the flags configure the provider.
	env := make([]string, 0, len(os.Environ()))
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "OP_") {
			env = append(env, kv)
		}
	}

	cmd := exec.Command("node", append([]string{"provider.mjs"}, opts.Args()...)...)
	cmd.Dir = op.dir
	cmd.Env = env
	cmd.Stderr = &op.logs
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatalf("interop: stdout pipe: %v", err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatalf("interop: starting node provider.mjs: %v", err)
	}
	p := &process{cmd: cmd, done: make(chan struct{})}
	op.mu.Lock()
	op.proc = p
	op.mu.Unlock()

	ready := make(chan string, 1)
	go func() {
		defer close(p.done)
		sc := bufio.NewScanner(stdout)
		for sc.Scan() {
			line := sc.Text()
			if issuer, ok := strings.CutPrefix(line, "READY "); ok {
				select {
				case ready <- strings.TrimSpace(issuer):
				default:
				}
				continue
			}
			fmt.Fprintf(&op.logs, "stdout: %s\n", line)
		}
		_, _ = io.Copy(io.Discard, stdout)
		_ = cmd.Wait()
	}()

	timer := time.NewTimer(ReadyTimeout)
	defer timer.Stop()
	select {
	case issuer := <-ready:
		port, err := portOf(issuer)
		if err != nil {
			op.stop()
			t.Fatalf("interop: provider announced %q: %v", issuer, err)
		}
		if op.Issuer != "" && op.Issuer != issuer {
			op.stop()
			t.Fatalf("interop: restarted provider has issuer %s, want %s", issuer, op.Issuer)
		}
		op.Issuer = issuer
		op.Port = port
		op.InteractionURLPrefix = issuer + "/interaction/"
	case <-p.done:
		t.Fatalf("interop: provider exited before it was ready (%v); its stderr is logged below", cmd.ProcessState)
	case <-timer.C:
		op.stop()
		t.Fatalf("interop: provider not ready after %v; its stderr is logged below", ReadyTimeout)
	}
}

var issuerRE = regexp.MustCompile(`^http://127\.0\.0\.1:([0-9]+)(/.*)?$`)

func portOf(issuer string) (int, error) {
	m := issuerRE.FindStringSubmatch(issuer)
	if m == nil {
		return 0, errors.New("not an http://127.0.0.1:PORT issuer")
	}
	return strconv.Atoi(m[1])
}

// stop ends the current process, politely first, and waits for it.
func (op *OP) stop() {
	op.mu.Lock()
	p := op.proc
	op.proc = nil
	op.mu.Unlock()
	if p == nil {
		return
	}
	if err := p.cmd.Process.Signal(syscall.SIGTERM); err != nil {
		_ = p.cmd.Process.Kill()
	}
	select {
	case <-p.done:
	case <-time.After(5 * time.Second):
		_ = p.cmd.Process.Kill()
		<-p.done
	}
}

const nodeHelp = "Node.js 20.18 or newer and npm are needed for the interop tests (e.g. `apt-get install nodejs npm` on Debian 13, or a Node.js 22 LTS build)"

// requireNode skips the test (fails it under CI) when node is not usable.
func requireNode(t testing.TB) {
	t.Helper()
	missing := func(format string, args ...any) {
		t.Helper()
		msg := fmt.Sprintf(format, args...) + ": " + nodeHelp + "; then " + RunHelp
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	path, err := exec.LookPath("node")
	if err != nil {
		missing("node not found on PATH")
		return
	}
	out, err := exec.Command(path, "--version").Output()
	if err != nil {
		missing("%s --version: %v", path, err)
		return
	}
	v := strings.TrimPrefix(strings.TrimSpace(string(out)), "v")
	parts := strings.SplitN(v, ".", 3)
	major, _ := strconv.Atoi(parts[0])
	minor := 0
	if len(parts) > 1 {
		minor, _ = strconv.Atoi(parts[1])
	}
	if major < 20 || (major == 20 && minor < 18) {
		missing("node %s is too old", v)
	}
}

// RunHelp says how to prepare and run the interop tests.
const RunHelp = "run ./scripts/test.sh from the repository root, which installs them and runs every test, " +
	"or install them once with `cd internal/interop && npm ci` and run `go test ./internal/interop/`"

// requireNodeModules skips the test (fails it under CI) unless oidc-provider
// is installed in dir/node_modules. Tests never install it themselves: that
// would make `go test ./...` download npm packages.
func requireNodeModules(t testing.TB, dir string) {
	t.Helper()
	marker := filepath.Join(dir, "node_modules", "oidc-provider", "package.json")
	if _, err := os.Stat(marker); err == nil {
		return
	}
	msg := fmt.Sprintf("interop tests need the npm packages pinned in %s, which are not installed (no %s): %s",
		filepath.Join(dir, "package-lock.json"), marker, RunHelp)
	if os.Getenv("CI") != "" {
		t.Fatal(msg)
	}
	t.Skip(msg)
}

type lockedBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *lockedBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *lockedBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}
