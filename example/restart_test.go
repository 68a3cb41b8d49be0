package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// TestProviderRestartHealsEveryBrowser runs the example binary against a
// development provider that is then restarted on the same address and so
// forgets every client. The first browser to try fails at the provider's
// own page, as it must: the provider never sends it back. Every browser
// after that signs in at its first attempt, because the example verifies
// its client once a login has gone unanswered for a few seconds.
func TestProviderRestartHealsEveryBrowser(t *testing.T) {
	op, stop, err := devop.Start("127.0.0.1:0", "", devop.Options{AutoLogin: true})
	if err != nil {
		t.Fatal(err)
	}
	issuer := op.Issuer()
	p := startReplica(t, buildExample(t), freeAddr(t), "-issuer", issuer)
	replicaSignIn(t, p)

	stop()
	addr := strings.TrimPrefix(issuer, "http://")
	restarted, stop2, err := devop.Start(addr, "", devop.Options{AutoLogin: true})
	if err != nil {
		t.Fatalf("restart the provider on %s: %v", addr, err)
	}
	defer stop2()

	// The first browser meets the provider's error page: the client is unknown.
	req, _ := http.NewRequest(http.MethodGet, p.base+"/me", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := replicaBrowser().Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode == http.StatusOK {
		t.Fatalf("a login with a client the provider forgot ended at %s with 200", resp.Request.URL)
	}
	time.Sleep(6 * time.Second) // longer than the example waits for an unanswered login

	for i := range 10 {
		before := restarted.Stats().Authorize
		replicaSignIn(t, p)
		if n := restarted.Stats().Authorize - before; n != 1 {
			t.Fatalf("browser %d went to the provider %d times, want 1\n%s", i, n, p.out)
		}
	}
	if s := restarted.Stats(); s.Registration != 1 {
		t.Errorf("%d registrations at the restarted provider, want 1", s.Registration)
	}
}
