package oidcrpotel

import (
	"context"

	"github.com/oidcrp/oidcrp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/metric"
)

// ObserveStatus exports what status reports as gauges, read at each
// collection: oidcrp.client_secret.expires_in, the seconds until each
// client secret expires ([oidcrp.Status].SecretExpiresIn; negative once
// expired), with the attributes oidc.issuer and, for a tenant, oidc.tenant.
// A relying party without a secret that expires (none yet, or one that
// never expires) has no data point.
//
// status is typically a closure over rp.Status or tenants.Status, which do
// no I/O; call ObserveStatus once the relying party exists:
//
//	reg, err := oidcrpotel.ObserveStatus(meters, tenants.Status)
//	reg, err := oidcrpotel.ObserveStatus(meters, func() []oidcrp.Status { return []oidcrp.Status{rp.Status()} })
//
// A nil mp means otel.GetMeterProvider(), as in [New]. Unregister the
// returned registration to stop observing.
func ObserveStatus(mp metric.MeterProvider, status func() []oidcrp.Status) (metric.Registration, error) {
	meter := meterOf(mp)
	gauge, err := meter.Float64ObservableGauge(metricSecretExpiresIn,
		metric.WithDescription("Time until the relying party's client secret expires; absent when it never expires."),
		metric.WithUnit("s"))
	if err != nil {
		return nil, err
	}
	return meter.RegisterCallback(func(_ context.Context, o metric.Observer) error {
		for _, s := range status() {
			if !s.Ready || s.SecretExpiresAt.IsZero() {
				continue
			}
			attrs := make([]attribute.KeyValue, 0, 2)
			attrs = append(attrs, attrIssuer.String(s.Issuer))
			if s.Tenant != "" {
				attrs = append(attrs, attrTenant.String(s.Tenant))
			}
			o.ObserveFloat64(gauge, s.SecretExpiresIn.Seconds(), metric.WithAttributeSet(attribute.NewSet(attrs...)))
		}
		return nil
	}, gauge)
}

// meterOf returns the package's meter of mp, or of the global provider.
func meterOf(mp metric.MeterProvider) metric.Meter {
	if mp == nil {
		mp = otel.GetMeterProvider()
	}
	return mp.Meter(scopeName)
}
