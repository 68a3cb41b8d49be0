package oidcrp

import (
	"context"
	"net/http"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// TestLogoutRevokesTokens: logout revokes the refresh and access tokens at
// the revocation endpoint, traced as "revocation".
func TestLogoutRevokesTokens(t *testing.T) {
	t.Parallel()
	revoked := make(chan Event, 2)
	e := newEnv(t, devop.Options{}, Config{KeepTokens: true, Trace: &Trace{
		Stop:      func(_ context.Context, ev Event) { sendOp(revoked, ev) },
		Exception: func(_ context.Context, ev Event) { sendOp(revoked, ev) },
	}})
	e.login("/")
	if resp := e.postLogout(); resp.StatusCode != http.StatusSeeOther {
		t.Fatalf("logout: %d", resp.StatusCode)
	}
	select {
	case ev := <-revoked:
		if ev.Err != nil {
			t.Fatalf("revocation failed: %v", ev.Err)
		}
	case <-time.After(10 * time.Second):
		t.Fatalf("no revocation\nlogs:\n%s", e.logs)
	}
	if n := e.op.Stats().Revocation; n != 2 {
		t.Errorf("%d revocation requests, want 2 (refresh and access token)", n)
	}
}

func sendOp(ch chan Event, ev Event) {
	if ev.Op == opRevocation {
		ch <- ev
	}
}

// TestLogoutWithoutTokensRevokesNothing: without KeepTokens there is nothing
// to revoke.
func TestLogoutWithoutTokensRevokesNothing(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	e.login("/")
	e.postLogout()
	if n := e.op.Stats().Revocation; n != 0 {
		t.Errorf("%d revocation requests without tokens", n)
	}
}

// TestLogoutNotHeldUpByRevocation: a revocation endpoint that fails or does
// not answer does not hold up the logout, which ends the session.
func TestLogoutNotHeldUpByRevocation(t *testing.T) {
	t.Parallel()
	for name, hang := range map[string]bool{"failing": false, "unresponsive": true} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			release := make(chan struct{})
			e := newEnv(t, devop.Options{Revocation: func(status *int) {
				if hang {
					<-release
				}
				*status = http.StatusServiceUnavailable
			}}, Config{KeepTokens: true})
			t.Cleanup(func() { close(release) }) // before the provider's server closes
			e.login("/")
			old := e.cookie("oidcrp")
			start := time.Now()
			if resp := e.postLogout(); resp.StatusCode != http.StatusSeeOther {
				t.Fatalf("logout: %d", resp.StatusCode)
			}
			if d := time.Since(start); d > 2*time.Second {
				t.Errorf("logout took %v", d)
			}
			if status := e.replay("/api", old); status != http.StatusUnauthorized {
				t.Errorf("the session survived the logout: %d", status)
			}
			if !hang {
				e.logs.waitFor(t, "revoking the tokens of a logged-out session failed", 10*time.Second)
			}
		})
	}
}
