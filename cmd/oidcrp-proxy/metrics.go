package main

import (
	"errors"
	"log/slog"
	"net"
	"net/http"
	"time"

	"github.com/oidcrp/oidcrp"
	oidcrpotel "github.com/oidcrp/oidcrp/otel"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	otelprom "go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// metrics holds the OpenTelemetry meters that -metrics-addr exposes in the
// Prometheus format at /metrics.
type metrics struct {
	registry *prometheus.Registry
	provider *sdkmetric.MeterProvider
}

func newMetrics() (*metrics, error) {
	reg := prometheus.NewRegistry()
	exporter, err := otelprom.New(otelprom.WithRegisterer(reg))
	if err != nil {
		return nil, err
	}
	return &metrics{registry: reg, provider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))}, nil
}

// trace returns the oidcrp.Config.Trace that feeds the meters.
func (m *metrics) trace() *oidcrp.Trace {
	return oidcrpotel.New(oidcrpotel.Options{MeterProvider: m.provider})
}

// serve observes the client secret's expiry and serves /metrics on addr, on
// its own listener so that the upstream keeps its own /metrics.
func (m *metrics) serve(addr string, status func() []oidcrp.Status, log *slog.Logger) (*http.Server, error) {
	if _, err := oidcrpotel.ObserveStatus(m.provider, status); err != nil {
		return nil, err
	}
	ln, err := net.Listen("tcp", addr)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /metrics", promhttp.HandlerFor(m.registry, promhttp.HandlerOpts{}))
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	go func() {
		if err := srv.Serve(ln); !errors.Is(err, http.ErrServerClosed) {
			log.Error("metrics listener failed", "addr", addr, "err", err)
		}
	}()
	log.Info("metrics at /metrics", "addr", ln.Addr().String())
	return srv, nil
}
