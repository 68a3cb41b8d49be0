package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"log"
	"net/http"
	"net/http/httputil"
	"net/url"
	"os"
	"os/exec"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// bareProxyEnv makes the test binary a bare httputil.ReverseProxy
// ("ADDR UPSTREAM"), for TestCompareThroughput: a process of its own, as
// the other two proxies are.
const bareProxyEnv = "OIDCRP_BARE_PROXY"

// runBareProxy serves a bare reverse proxy when the test binary was started
// for it, and reports whether it was.
func runBareProxy() bool {
	spec := os.Getenv(bareProxyEnv)
	if spec == "" {
		return false
	}
	addr, up, _ := strings.Cut(spec, " ")
	target, err := url.Parse(up)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	transport := http.DefaultTransport.(*http.Transport).Clone()
	transport.MaxIdleConns, transport.MaxIdleConnsPerHost = 1024, 512
	rp := &httputil.ReverseProxy{Transport: transport, ErrorLog: log.New(io.Discard, "", 0), Rewrite: func(pr *httputil.ProxyRequest) {
		pr.SetURL(target)
		pr.SetXForwarded()
	}}
	fmt.Fprintln(os.Stderr, http.ListenAndServe(addr, rp))
	os.Exit(1)
	return true
}

// TestCompareThroughput measures authenticated requests per second through
// oidcrp-proxy, a bare httputil.ReverseProxy and oauth2-proxy, on the same
// upstream and provider, one after the other, for BENCHMARKS.md. It runs
// only with OIDCRP_BENCH_OAUTH2_PROXY set to an oauth2-proxy binary, and is
// meant for a run without -race:
//
//	go install github.com/oauth2-proxy/oauth2-proxy/v7@v7.15.6
//	OIDCRP_BENCH_OAUTH2_PROXY=$(go env GOPATH)/bin/oauth2-proxy go test -run TestCompareThroughput -v ./cmd/oidcrp-proxy
//
// OIDCRP_BENCH_ROUNDS (default 7), OIDCRP_BENCH_DURATION (default 3s) and
// OIDCRP_BENCH_CONNS (default 64) set the number of rounds, each
// measurement's length and the number of concurrent clients.
func TestCompareThroughput(t *testing.T) {
	o2p := os.Getenv("OIDCRP_BENCH_OAUTH2_PROXY")
	if o2p == "" {
		t.Skip("set OIDCRP_BENCH_OAUTH2_PROXY to an oauth2-proxy binary to compare throughput")
	}
	dur, err := time.ParseDuration(envOr("OIDCRP_BENCH_DURATION", "3s"))
	if err != nil {
		t.Fatal(err)
	}
	conns, err := strconv.Atoi(envOr("OIDCRP_BENCH_CONNS", "64"))
	if err != nil {
		t.Fatal(err)
	}
	rounds, err := strconv.Atoi(envOr("OIDCRP_BENCH_ROUNDS", "7"))
	if err != nil {
		t.Fatal(err)
	}
	upstream := newTestServer(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain")
		w.Write([]byte("hello, " + r.Header.Get("X-Forwarded-User") + "\n"))
	}))
	op, stop, err := devop.Start("127.0.0.1:0", "", devop.Options{AutoLogin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()

	// oidcrp-proxy registers itself.
	ours := startProxy(t, "-issuer", op.Issuer(), "-upstream", upstream)

	// The bare reverse proxy: this test binary in another process.
	bareAddr := freeAddr(t)
	bare := exec.Command(os.Args[0])
	bare.Env = append(os.Environ(), bareProxyEnv+"="+bareAddr+" "+upstream)
	bare.Stderr = os.Stderr
	if err := bare.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { bare.Process.Kill(); bare.Wait() })
	waitFor(t, "http://"+bareAddr+"/", make(chan struct{}), &syncBuffer{})

	// oauth2-proxy with a client registered by hand at the same provider.
	theirAddr := freeAddr(t)
	their := "http://" + theirAddr
	id, secret := registerByHand(t, op.Issuer(), their+"/oauth2/callback")
	o2pLog := &syncBuffer{}
	cmd := exec.Command(o2p, "--provider=oidc", "--oidc-issuer-url="+op.Issuer(), "--client-id="+id, "--client-secret="+secret,
		"--redirect-url="+their+"/oauth2/callback", "--upstream="+upstream, "--http-address="+theirAddr,
		"--cookie-secret=0123456789abcdef0123456789abcdef", "--cookie-secure=false", "--email-domain=*",
		"--code-challenge-method=S256", "--skip-provider-button=true", "--request-logging=false", "--auth-logging=false")
	cmd.Stdout, cmd.Stderr = o2pLog, o2pLog
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		cmd.Process.Kill()
		cmd.Wait()
		if t.Failed() {
			t.Logf("oauth2-proxy log:\n%s", o2pLog)
		}
	})
	waitFor(t, their+"/ping", make(chan struct{}), o2pLog)

	// Rounds, each measuring every proxy in a rotated order, and the median
	// of each: other load on the machine drifts, and would otherwise favour
	// whichever proxy ran at a quiet moment.
	targets := []struct{ name, base, cookie string }{
		{name: "bare httputil.ReverseProxy", base: "http://" + bareAddr},
		{name: "oidcrp-proxy", base: ours.base},
		{name: "oauth2-proxy v7.15.6", base: their},
	}
	for i := range targets {
		targets[i].cookie = signInCookie(t, targets[i].base)
	}
	// The bare proxy's requests carry oidcrp-proxy's cookies, so that every
	// proxy reads requests of the same size.
	targets[0].cookie = targets[1].cookie
	samples := make([][]float64, len(targets))
	for round := range rounds {
		for k := range targets {
			i := (round + k) % len(targets)
			samples[i] = append(samples[i], hammer(t, targets[i].base+"/", targets[i].cookie, conns, dur))
		}
	}
	med := make([]float64, len(targets))
	for i, tg := range targets {
		slices.Sort(samples[i])
		med[i] = samples[i][len(samples[i])/2]
		t.Logf("%-28s median %6.0f requests/s  (rounds: %.0f)", tg.name, med[i], samples[i])
	}
	t.Logf("%d rounds of %v, %d concurrent clients, GOMAXPROCS %d: oidcrp-proxy/bare %.2f, oauth2-proxy/bare %.2f, oidcrp-proxy/oauth2-proxy %.2f",
		rounds, dur, conns, runtime.GOMAXPROCS(0), med[1]/med[0], med[2]/med[0], med[1]/med[2])
}

func envOr(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

// registerByHand registers a client at the development provider as an
// administrator would for oauth2-proxy.
func registerByHand(t *testing.T, issuer, redirect string) (id, secret string) {
	t.Helper()
	body, _ := json.Marshal(map[string]any{"redirect_uris": []string{redirect}, "token_endpoint_auth_method": "client_secret_basic"})
	resp, err := http.Post(issuer+"/register", "application/json", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var c struct {
		ID     string `json:"client_id"`
		Secret string `json:"client_secret"`
	}
	if err := json.NewDecoder(resp.Body).Decode(&c); err != nil || c.ID == "" {
		t.Fatalf("registration: %d %v", resp.StatusCode, err)
	}
	return c.ID, c.Secret
}

// signInCookie signs in at base (the provider signs in without a page) and
// returns the Cookie header that carries the session ("" for the bare
// proxy, which has no sign-in).
func signInCookie(t *testing.T, base string) string {
	t.Helper()
	b := newBrowser(t)
	resp, body := b.get(base+"/", "text/html")
	if resp.StatusCode != 200 || !strings.HasPrefix(body, "hello, ") {
		t.Fatalf("%s: sign-in ended with %d %.300s", base, resp.StatusCode, body)
	}
	u, _ := url.Parse(base)
	var parts []string
	for _, c := range b.c.Jar.Cookies(u) {
		parts = append(parts, c.Name+"="+c.Value)
	}
	return strings.Join(parts, "; ")
}

// hammer sends GET u with cookie from conns clients for dur (after a
// half a second's warm-up) and returns the rate of 200 answers.
func hammer(t *testing.T, u, cookie string, conns int, dur time.Duration) float64 {
	t.Helper()
	transport := &http.Transport{MaxIdleConns: conns, MaxIdleConnsPerHost: conns, DisableCompression: true}
	defer transport.CloseIdleConnections()
	client := &http.Client{Transport: transport, CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	var ok, bad atomic.Int64
	var counting atomic.Bool
	ctx, cancel := context.WithTimeout(context.Background(), dur+time.Second/2)
	defer cancel()
	var wg sync.WaitGroup
	for range conns {
		wg.Go(func() {
			buf := make([]byte, 512)
			for ctx.Err() == nil {
				req, _ := http.NewRequestWithContext(ctx, http.MethodGet, u, nil)
				req.Header.Set("Cookie", cookie)
				resp, err := client.Do(req)
				if err != nil {
					continue
				}
				for {
					if _, err := resp.Body.Read(buf); err != nil {
						break
					}
				}
				resp.Body.Close()
				if !counting.Load() {
					continue
				}
				if resp.StatusCode == http.StatusOK {
					ok.Add(1)
				} else {
					bad.Add(1)
				}
			}
		})
	}
	time.Sleep(time.Second / 2)
	counting.Store(true)
	start := time.Now()
	wg.Wait()
	elapsed := time.Since(start)
	if bad.Load() > 0 {
		t.Errorf("%s: %d answers other than 200", u, bad.Load())
	}
	return float64(ok.Load()) / elapsed.Seconds()
}
