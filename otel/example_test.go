package oidcrpotel_test

import (
	"fmt"
	"log"
	"net/http"

	"github.com/oidcrp/oidcrp"
	oidcrpotel "github.com/oidcrp/oidcrp/otel"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"go.opentelemetry.io/otel/exporters/prometheus"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
)

// Serve the relying party's metrics to Prometheus at /metrics: the
// counters oidcrp_operations_total and oidcrp_logins_total, the
// histogram oidcrp_operation_duration_seconds and the gauge
// oidcrp_client_secret_expires_in_seconds.
func ExampleNew_prometheus() {
	exporter, err := prometheus.New() // registers with prometheus.DefaultRegisterer
	if err != nil {
		log.Fatal(err)
	}
	meters := sdkmetric.NewMeterProvider(sdkmetric.WithReader(exporter))

	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:      "https://login.example.com",
		RedirectURL: "https://app.example.com/auth/callback",
		// Spans go to the global TracerProvider.
		Trace: oidcrpotel.New(oidcrpotel.Options{MeterProvider: meters}),
	})
	if err != nil {
		log.Fatal(err)
	}
	// The gauge oidcrp_client_secret_expires_in_seconds, read from rp.Status.
	if _, err := oidcrpotel.ObserveStatus(meters, func() []oidcrp.Status { return []oidcrp.Status{rp.Status()} }); err != nil {
		log.Fatal(err)
	}
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcrp.UserFromContext(r.Context())
		fmt.Fprintln(w, "hello", u.Subject)
	})
	mux := http.NewServeMux()
	mux.Handle("/metrics", promhttp.Handler())
	mux.Handle("/", rp.Require(app))
	log.Fatal(http.ListenAndServe(":8080", mux))
}
