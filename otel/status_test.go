package oidcrpotel_test

import (
	"context"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/internal/devop"
	oidcrpotel "github.com/oidcrp/oidcrp/otel"
	"go.opentelemetry.io/otel/attribute"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
)

func startOP(t *testing.T, opts devop.Options) (*devop.Provider, *http.Client) {
	t.Helper()
	op := devop.New(opts)
	srv := httptest.NewTLSServer(op)
	t.Cleanup(srv.Close)
	op.SetIssuer(srv.URL)
	return op, srv.Client()
}

// TestSecretExpiryGauge: ObserveStatus exports the seconds until each
// client secret expires, by issuer and tenant, and nothing for secrets
// that never expire.
func TestSecretExpiryGauge(t *testing.T) {
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	expiring, client := startOP(t, devop.Options{SecretLifetime: time.Hour})
	rp, err := oidcrp.New(oidcrp.Config{Issuer: expiring.Issuer(), RedirectURL: "https://app.example.com/auth/callback", HTTPClient: client, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	never, client2 := startOP(t, devop.Options{})
	rp2, err := oidcrp.New(oidcrp.Config{Issuer: never.Issuer(), RedirectURL: "https://app.example.com/auth/callback", HTTPClient: client2, Logger: quiet})
	if err != nil {
		t.Fatal(err)
	}
	tenantOP, client3 := startOP(t, devop.Options{SecretLifetime: 2 * time.Hour})
	tenants, err := oidcrp.NewTenants(oidcrp.TenantsConfig{
		Resolve:     func(*http.Request) (oidcrp.Tenant, error) { return oidcrp.Tenant{}, nil },
		AllowIssuer: func(string) bool { return true },
		Base:        oidcrp.Config{HTTPClient: client3, Logger: quiet},
	})
	if err != nil {
		t.Fatal(err)
	}
	trp, err := tenants.For(oidcrp.Tenant{ID: "acme", Issuer: tenantOP.Issuer(), RedirectURL: "https://acme.example.com/auth/callback"})
	if err != nil {
		t.Fatal(err)
	}

	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	t.Cleanup(func() { _ = mp.Shutdown(context.Background()) })
	reg, err := oidcrpotel.ObserveStatus(mp, func() []oidcrp.Status {
		return append([]oidcrp.Status{rp.Status(), rp2.Status()}, tenants.Status()...)
	})
	if err != nil {
		t.Fatal(err)
	}

	collect := func() map[attribute.Set]float64 {
		t.Helper()
		var rm metricdata.ResourceMetrics
		if err := reader.Collect(context.Background(), &rm); err != nil {
			t.Fatal(err)
		}
		out := map[attribute.Set]float64{}
		for _, sm := range rm.ScopeMetrics {
			for _, m := range sm.Metrics {
				if m.Name != "oidcrp.client_secret.expires_in" {
					continue
				}
				if m.Unit != "s" {
					t.Errorf("unit %q, want s", m.Unit)
				}
				g, ok := m.Data.(metricdata.Gauge[float64])
				if !ok {
					t.Fatalf("%s is a %T, want a float64 gauge", m.Name, m.Data)
				}
				for _, dp := range g.DataPoints {
					out[dp.Attributes] = dp.Value
				}
			}
		}
		return out
	}

	if got := collect(); len(got) != 0 {
		t.Errorf("before registration: %v, want no data points", got)
	}
	ctx := context.Background()
	for _, r := range []*oidcrp.RP{rp, rp2, trp} {
		if err := r.Ready(ctx); err != nil {
			t.Fatal(err)
		}
	}
	got := collect()
	single := attribute.NewSet(attribute.String("oidc.issuer", expiring.Issuer()))
	tenant := attribute.NewSet(attribute.String("oidc.issuer", tenantOP.Issuer()), attribute.String("oidc.tenant", "acme"))
	if len(got) != 2 {
		t.Errorf("data points %v, want 2 (none for the secret that never expires)", got)
	}
	if v, ok := got[single]; !ok || v < 3590 || v > 3600 {
		t.Errorf("single RP: %v (present %v), want about 3600", v, ok)
	}
	if v, ok := got[tenant]; !ok || v < 7190 || v > 7200 {
		t.Errorf("tenant: %v (present %v), want about 7200", v, ok)
	}

	if err := reg.Unregister(); err != nil {
		t.Fatal(err)
	}
	if got := collect(); len(got) != 0 {
		t.Errorf("after Unregister: %v, want no data points", got)
	}
}
