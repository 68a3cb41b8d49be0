package main

import (
	"net/http"
	"strings"
	"testing"
)

// TestMetrics checks that -metrics-addr serves the otel module's metrics on
// their own listener, while /metrics on the proxy's address stays the
// upstream's.
func TestMetrics(t *testing.T) {
	up := newUpstream(t)
	metricsAddr := freeAddr(t)
	p := startProxy(t, "-dev", "-upstream", up.URL, "-metrics-addr", metricsAddr)
	b := newBrowser(t)
	b.signIn(p.base + "/")

	resp, body := b.get("http://"+metricsAddr+"/metrics", "text/plain")
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("/metrics: %d %s", resp.StatusCode, body)
	}
	for _, want := range []string{`oidcrp_logins_total{`, `outcome="completed"`, `oidcrp_operations_total{`, `oidcrp_operation_duration_seconds`} {
		if !strings.Contains(body, want) {
			t.Errorf("/metrics lacks %s:\n%s", want, body)
		}
	}
	resp, body = b.get(p.base+"/metrics", "text/plain")
	if e := decodeEcho(t, resp, body); e.URI != "/metrics" {
		t.Errorf("/metrics at the proxy's address did not reach the upstream: %s", e.URI)
	}
}
