package main

import (
	"encoding/json"
	"net/http"
	"strings"
	"testing"
)

// TestExampleAPIDemo: /api-demo calls the provider's userinfo endpoint
// through the signed-in user's client.
func TestExampleAPIDemo(t *testing.T) {
	for name, tc := range map[string]struct {
		args []string
		path string
	}{
		"single":  {nil, ""},
		"tenants": {[]string{"-tenants", "acme"}, "/t/acme"},
	} {
		t.Run(name, func(t *testing.T) {
			base := start(t, tc.args...) + tc.path
			b := newBrowser(t)
			if resp, _ := b.get(base+"/api-demo", "application/json"); resp.StatusCode != http.StatusUnauthorized {
				t.Fatalf("/api-demo without a session: %d", resp.StatusCode)
			}
			if m := b.signIn(base + "/me"); m.Sub != "demo-user" {
				t.Fatalf("signed in as %+v", m)
			}
			resp, body := b.get(base+"/api-demo", "application/json")
			var out struct {
				Endpoint string         `json:"userinfo_endpoint"`
				Status   int            `json:"status"`
				UserInfo map[string]any `json:"userinfo"`
				Error    string         `json:"error"`
			}
			if err := json.Unmarshal([]byte(body), &out); err != nil || resp.StatusCode != http.StatusOK {
				t.Fatalf("/api-demo: %d %s", resp.StatusCode, body)
			}
			if out.Status != http.StatusOK || out.UserInfo["sub"] != "demo-user" || out.Endpoint == "" {
				t.Errorf("/api-demo answered %+v", out)
			}
			if _, home := b.get(base+"/", "text/html"); !strings.Contains(home, `href="api-demo"`) {
				t.Errorf("the home page does not link /api-demo: %s", home)
			}
		})
	}
}
