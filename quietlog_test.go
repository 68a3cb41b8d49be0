package oidcrp

import (
	"context"
	"errors"
	"net/http"
	"net/http/cookiejar"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// logLines returns the log lines that contain every one of substrs.
func logLines(logs string, substrs ...string) []string {
	var out []string
	for _, line := range strings.Split(logs, "\n") {
		ok := line != ""
		for _, s := range substrs {
			ok = ok && strings.Contains(line, s)
		}
		if ok {
			out = append(out, line)
		}
	}
	return out
}

// TestSetupFailureLoggedOncePerEpisode: a provider whose discovery fails
// costs one error line for the episode, not one per refused request; the
// requests refused meanwhile are logged at debug level; a long outage is
// reported again periodically with a count, and its end once.
func TestSetupFailureLoggedOncePerEpisode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	up := e.opSrv.Config.Handler
	var down atomic.Bool
	var attempts atomic.Int32
	down.Store(true)
	e.opSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if down.Load() {
			attempts.Add(1)
			http.Error(w, "maintenance", http.StatusBadGateway)
			return
		}
		up.ServeHTTP(w, r)
	})
	const requests = 21
	for i := range requests {
		resp := e.get(e.app.URL+"/", html)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("request %d while the provider is down: %d", i, resp.StatusCode)
		}
		if i%5 == 4 {
			e.clock.Advance(time.Minute) // past the backoff: the next request tries again
		}
	}
	logs := e.logs.String()
	if errs := logLines(logs, "level=ERROR"); len(errs) != 1 || !strings.Contains(errs[0], "client setup failed") || !strings.Contains(errs[0], "502") {
		t.Fatalf("want one error line naming the cause for %d refused requests, got %d:\n%s", requests, len(errs), strings.Join(errs, "\n"))
	}
	if refused := logLines(logs, "level=DEBUG", "cannot start login"); len(refused) != requests {
		t.Errorf("want %d refused requests at debug level, got %d:\n%s", requests, len(refused), logs)
	}
	if attempts := attempts.Load(); attempts < 4 {
		t.Fatalf("only %d discovery attempts: the test did not get past the backoff", attempts)
	}

	// Still failing long after: one line counting the failures since.
	e.clock.Advance(failureReportEvery)
	resp := e.get(e.app.URL+"/", html)
	resp.Body.Close()
	again := logLines(e.logs.String(), "level=ERROR", "still failing")
	if len(again) != 1 || !strings.Contains(again[0], "failed_more=") {
		t.Fatalf("want one periodic report of the ongoing failure, got:\n%s", e.logs)
	}

	// Recovery: one line, and nothing more at error level.
	down.Store(false)
	e.clock.Advance(2 * time.Minute)
	e.login("/")
	logs = e.logs.String()
	if ended := logLines(logs, "level=INFO", "client setup works again", "failed_more="); len(ended) != 1 {
		t.Errorf("want one line reporting the end of the episode:\n%s", logs)
	}
	if errs := logLines(logs, "level=ERROR"); len(errs) != 2 {
		t.Errorf("want 2 error lines in all, got %d:\n%s", len(errs), strings.Join(errs, "\n"))
	}

	// A new failure is a new episode, logged again.
	down.Store(true)
	e.rp.lc.cur.Store(nil) // as if the process restarted its setup
	e.browser.Jar = nil
	resp = e.get(e.app.URL+"/", html)
	resp.Body.Close()
	if errs := logLines(e.logs.String(), "level=ERROR", "client setup failed"); len(errs) != 3 {
		t.Errorf("a new episode is not logged: %d error lines\n%s", len(errs), e.logs)
	}
}

// keysDownStore fails every access to the session keys while down is set.
type keysDownStore struct {
	MemoryStore
	down atomic.Bool
}

func (s *keysDownStore) Load(ctx context.Context, key string) ([]byte, error) {
	if key == sessionKeysKey && s.down.Load() {
		return nil, errors.New("store unreachable")
	}
	return s.MemoryStore.Load(ctx, key)
}

// TestSessionKeysFailureLoggedOncePerEpisode: a store that cannot give
// the session keys costs one error line, not one per request.
func TestSessionKeysFailureLoggedOncePerEpisode(t *testing.T) {
	t.Parallel()
	store := &keysDownStore{}
	store.down.Store(true)
	e := newEnv(t, devop.Options{}, Config{Store: store})
	for range 10 {
		resp := e.get(e.app.URL+"/", html)
		resp.Body.Close()
		if resp.StatusCode != http.StatusServiceUnavailable {
			t.Fatalf("keys unavailable: %d", resp.StatusCode)
		}
	}
	logs := e.logs.String()
	if errs := logLines(logs, "level=ERROR"); len(errs) != 1 || !strings.Contains(errs[0], "session keys unavailable") {
		t.Fatalf("want one error line, got %d:\n%s", len(errs), logs)
	}
	store.down.Store(false)
	e.login("/")
	if len(logLines(e.logs.String(), "level=INFO", "session keys available again", "failed_more=9")) != 1 {
		t.Errorf("the end of the episode is not reported:\n%s", e.logs)
	}
}

// TestStaleCredentialsWarnedOnce: while renewing an expiring secret fails,
// logins go on with the current one, and that is said once, not per
// request.
func TestStaleCredentialsWarnedOnce(t *testing.T) {
	t.Parallel()
	store := &failingStore{MemoryStore: new(MemoryStore)}
	e := newEnv(t, devop.Options{SecretLifetime: 20 * time.Minute}, Config{Store: store})
	e.login("/")
	store.broken.Store(true)
	e.clock.Advance(16 * time.Minute) // inside the renewal margin, before expiry
	for range 10 {
		e.browser.Jar, _ = cookiejar.New(nil)
		e.login("/")
	}
	if warned := logLines(e.logs.String(), "level=WARN", "using the current credentials"); len(warned) != 1 {
		t.Errorf("want one warning for 10 logins with the current credentials, got %d:\n%s", len(warned), e.logs)
	}
}

// TestRefreshFailureLoggedOncePerEpisode: while the token endpoint is
// down, every request of a session whose access token expired tries a
// refresh; the failure is logged once, and its end once.
func TestRefreshFailureLoggedOncePerEpisode(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute, AccessTokenLifetime: 5 * time.Minute}, Config{KeepTokens: true})
	e.login("/")
	up := e.opSrv.Config.Handler
	e.opSrv.Config.Handler = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		http.Error(w, "maintenance", http.StatusServiceUnavailable)
	})
	e.clock.Advance(5 * time.Minute) // the access token expired, the session has not
	for range 10 {
		if status, _, _ := e.apiGet("/api"); status != http.StatusOK {
			t.Fatalf("refresh failing at a down provider: %d", status)
		}
	}
	if warned := logLines(e.logs.String(), "level=WARN", "refreshing sessions' tokens failed"); len(warned) != 1 {
		t.Errorf("want one warning for 10 failed refreshes, got %d:\n%s", len(warned), e.logs)
	}
	e.opSrv.Config.Handler = up
	if status, _, _ := e.apiGet("/api"); status != http.StatusOK {
		t.Fatalf("after the provider came back: %d", status)
	}
	if len(logLines(e.logs.String(), "level=INFO", "refreshing sessions' tokens works again", "failed_more=9")) != 1 {
		t.Errorf("the end of the episode is not reported:\n%s", e.logs)
	}
}
