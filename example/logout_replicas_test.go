package main

import (
	"net/http"
	"net/url"
	"os"
	"strings"
	"testing"
	"time"
)

// TestExampleReplicasShareLogout runs two instances of the example as
// replicas of one application behind a load balancer: the same -store
// redis://…, the same -public-url, the first's embedded provider passed to
// the second with -issuer. A browser signed in through one is signed in at
// both; once it signs out at either, its session cookie, replayed to the
// other (as a stale tab or a stolen cookie would be), is refused there
// within a second.
func TestExampleReplicasShareLogout(t *testing.T) {
	addr := os.Getenv("OIDCRP_REDIS_ADDR")
	if addr == "" {
		if os.Getenv("CI") != "" {
			t.Fatal("OIDCRP_REDIS_ADDR is not set: run ./scripts/test.sh, which starts redis-server")
		}
		t.Skip("OIDCRP_REDIS_ADDR not set; ./scripts/test.sh starts redis-server")
	}
	store := "redis://" + addr + "/0"
	a := start(t, "-store", store)
	issuer := embeddedIssuer(t, a)
	b := start(t, "-store", store, "-issuer", issuer, "-public-url", a)
	replicas := []string{a, b}

	for _, round := range []struct{ at, other int }{{0, 1}, {1, 0}} {
		br := newBrowser(t)
		if m := br.signIn(replicas[round.other] + "/me"); m.Sub != "demo-user" || m.Iss != issuer {
			t.Fatalf("signed in through replica %d as %+v", round.other, m)
		}
		// Cookies are per host, not per port: the browser is signed in at both.
		for i, base := range replicas {
			if resp, body := br.get(base+"/me", "application/json"); resp.StatusCode != http.StatusOK {
				t.Fatalf("replica %d answered %d to a browser signed in through replica %d: %s", i, resp.StatusCode, round.other, body)
			}
		}
		u, _ := url.Parse(a)
		session := br.c.Jar.Cookies(u)

		logout, _ := http.NewRequest(http.MethodPost, replicas[round.at]+"/logout", nil)
		logout.Header.Set("Origin", a) // the public origin of both
		if _, body := br.do(logout); !strings.Contains(body, "signed out") {
			t.Fatalf("logout at replica %d ended with: %s", round.at, body)
		}
		start := time.Now()
		if code := replay(t, replicas[round.at], session); code != http.StatusUnauthorized {
			t.Fatalf("replica %d, which served the logout, answered %d to the old cookie", round.at, code)
		}
		for {
			code := replay(t, replicas[round.other], session)
			took := time.Since(start)
			if code == http.StatusUnauthorized {
				t.Logf("logout at replica %d refused at replica %d after %v", round.at, round.other, took.Round(time.Millisecond))
				if took > time.Second {
					t.Errorf("logout at replica %d refused at replica %d only after %v, want at most 1s", round.at, round.other, took)
				}
				break
			}
			if code != http.StatusOK {
				t.Fatalf("replica %d answered %d to the old cookie", round.other, code)
			}
			if took > 2*time.Second {
				t.Fatalf("logout at replica %d: replica %d still accepts the old cookie after %v; the revocation never reached it through Redis",
					round.at, round.other, took.Round(time.Millisecond))
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
}

// embeddedIssuer returns the issuer of the development provider the
// example at base started: where it sends a browser to sign in.
func embeddedIssuer(t *testing.T, base string) string {
	t.Helper()
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	req, _ := http.NewRequest(http.MethodGet, base+"/", nil)
	req.Header.Set("Accept", "text/html")
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	loc, err := resp.Location()
	if err != nil {
		t.Fatalf("GET / answered %d without a redirect to the provider: %v", resp.StatusCode, err)
	}
	return loc.Scheme + "://" + loc.Host
}

// replay sends an API request for /me at base carrying only cookies, and
// returns the status.
func replay(t *testing.T, base string, cookies []*http.Cookie) int {
	t.Helper()
	req, _ := http.NewRequest(http.MethodGet, base+"/me", nil)
	req.Header.Set("Accept", "application/json")
	for _, c := range cookies {
		req.AddCookie(c)
	}
	resp, err := (&http.Client{Timeout: 10 * time.Second}).Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	return resp.StatusCode
}
