package main

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// TestProviderRestartHealsEveryBrowser runs the example against a
// development provider that is then restarted on the same address and so
// forgets every client. The first browser to try fails at the provider's
// own page, as it must: the provider never sends it back. Every browser
// after that signs in at its first attempt, because the example verifies
// its client once a login has gone unanswered for a few seconds.
func TestProviderRestartHealsEveryBrowser(t *testing.T) {
	op, stop, err := devop.Start("127.0.0.1:0", "", devop.Options{})
	if err != nil {
		t.Fatal(err)
	}
	issuer := op.Issuer()
	base := start(t, "-issuer", issuer)
	if m := newBrowser(t).signIn(base + "/me"); m.Sub != "demo-user" {
		t.Fatalf("before the restart: signed in as %+v", m)
	}

	stop()
	addr := strings.TrimPrefix(issuer, "http://")
	restarted, stop2, err := devop.Start(addr, "", devop.Options{})
	if err != nil {
		t.Fatalf("restart the provider on %s: %v", addr, err)
	}
	defer stop2()

	// The first browser meets the provider's error page: the client is unknown.
	resp, page := newBrowser(t).get(base+"/me", "text/html")
	if resp.StatusCode == http.StatusOK && strings.Contains(page, "not for production") && strings.Contains(page, "request_id") {
		t.Fatalf("the provider offered a sign-in to a client it cannot know: %s", page)
	}
	time.Sleep(6 * time.Second) // longer than the example waits for an unanswered login

	for i := range 10 {
		before := restarted.Stats().Authorize
		if m := newBrowser(t).signIn(base + "/me"); m.Sub != "demo-user" {
			t.Fatalf("browser %d after the restart: signed in as %+v", i, m)
		}
		if n := restarted.Stats().Authorize - before; n != 1 {
			t.Fatalf("browser %d went to the provider %d times, want 1", i, n)
		}
	}
	if s := restarted.Stats(); s.Registration != 1 {
		t.Errorf("%d registrations at the restarted provider, want 1", s.Registration)
	}
}
