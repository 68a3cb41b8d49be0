package oidcrp

import (
	"strings"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// TestIDTokenAzpAndIat covers the checks of OIDC Core §3.1.3.7 that go-oidc
// leaves to the relying party: an azp naming another client, and an iat
// issued in the future beyond the allowed clock skew.
func TestIDTokenAzpAndIat(t *testing.T) {
	cases := []struct {
		name    string
		hook    func(clock *fakeClock) func(c, h map[string]any)
		reason  Reason        // "" when the login must complete
		advance time.Duration // of the shared clock, before the login
	}{
		{"azp of another client", func(*fakeClock) func(c, h map[string]any) {
			return func(c, h map[string]any) { c["azp"] = "other-client" }
		}, ReasonInvalidIDToken, 0},
		{"azp not a string", func(*fakeClock) func(c, h map[string]any) {
			return func(c, h map[string]any) { c["azp"] = []any{c["aud"]} }
		}, ReasonInvalidIDToken, 0},
		{"azp empty", func(*fakeClock) func(c, h map[string]any) {
			return func(c, h map[string]any) { c["azp"] = "" }
		}, ReasonInvalidIDToken, 0},
		{"azp of this client", func(*fakeClock) func(c, h map[string]any) {
			return func(c, h map[string]any) { c["azp"] = c["aud"] }
		}, "", 0},
		{"iat an hour ahead", func(clock *fakeClock) func(c, h map[string]any) {
			return func(c, h map[string]any) {
				now := clock.Now()
				c["iat"] = now.Add(time.Hour).Unix()
				c["exp"] = now.Add(2 * time.Hour).Unix()
			}
		}, ReasonInvalidIDToken, 0},
		{"iat six minutes ahead", func(clock *fakeClock) func(c, h map[string]any) {
			return func(c, h map[string]any) { c["iat"] = clock.Now().Add(6 * time.Minute).Unix() }
		}, ReasonInvalidIDToken, 0},
		{"iat within the skew", func(clock *fakeClock) func(c, h map[string]any) {
			return func(c, h map[string]any) { c["iat"] = clock.Now().Add(2 * time.Minute).Unix() }
		}, "", 0},
		{"clocks ahead of the wall clock", func(*fakeClock) func(c, h map[string]any) {
			return func(c, h map[string]any) {}
		}, "", 2 * time.Hour},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			clock := &fakeClock{}
			e := newEnv(t, devop.Options{Now: clock.Now, IDToken: tc.hook(clock)}, Config{})
			e.clock = clock
			e.rp.now = clock.Now
			clock.Advance(tc.advance)
			status, body := e.attempt("/")
			if tc.reason == "" {
				if status != 200 {
					t.Fatalf("login ended with %d %s, want 200\nlogs:\n%s", status, body, e.logs)
				}
				return
			}
			if status != 400 || !strings.Contains(body, string(tc.reason)) {
				t.Errorf("ended with %d %s, want 400 with reason %s", status, body, tc.reason)
			}
			if e.cookie("oidcrp") != nil {
				t.Error("a session cookie was set")
			}
			if e.handled.Load() != 0 {
				t.Error("the protected handler ran")
			}
			if !strings.Contains(e.logs.String(), "reason="+string(tc.reason)) {
				t.Errorf("no log line with reason=%s:\n%s", tc.reason, e.logs)
			}
		})
	}
}

// TestIDTokenAzpWithoutUserInfo checks azp on the path that decodes no
// claims for userinfo or a ClaimFilter.
func TestIDTokenAzpWithoutUserInfo(t *testing.T) {
	e := newEnv(t, devop.Options{IDToken: func(c, h map[string]any) { c["azp"] = "other-client" }}, Config{SkipUserInfo: true})
	if status, body := e.attempt("/"); status != 400 || !strings.Contains(body, string(ReasonInvalidIDToken)) {
		t.Errorf("ended with %d %s, want 400 with reason %s", status, body, ReasonInvalidIDToken)
	}
	if e.op.Stats().UserInfo != 0 {
		t.Error("userinfo was called")
	}
}
