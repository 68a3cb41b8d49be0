package oidcrpotel

import (
	"context"

	"github.com/oidcrp/oidcrp"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	"go.opentelemetry.io/otel/metric"
	"go.opentelemetry.io/otel/metric/noop"
	"go.opentelemetry.io/otel/trace"
)

// scopeName is the instrumentation scope of the tracer and meter.
const scopeName = "github.com/oidcrp/oidcrp/otel"

// Attribute keys of spans and metrics.
const (
	attrIssuer    = attribute.Key("oidc.issuer")      // spans and metrics
	attrTenant    = attribute.Key("oidc.tenant")      // spans, when not empty
	attrClientID  = attribute.Key("oidc.client_id")   // spans, when not empty
	attrOperation = attribute.Key("oidcrp.operation") // spans and metrics
	attrReason    = attribute.Key("oidcrp.reason")    // on failure, when known
	attrOutcome   = attribute.Key("oidcrp.outcome")   // metrics
)

// Metric names.
const (
	metricOperations = "oidcrp.operations"         // counter
	metricDuration   = "oidcrp.operation.duration" // histogram, seconds
	metricLogins     = "oidcrp.logins"             // counter

	metricSecretExpiresIn = "oidcrp.client_secret.expires_in" // gauge, seconds (ObserveStatus)
)

// Options configures [New].
type Options struct {
	// TracerProvider creates the tracer. Default: otel.GetTracerProvider().
	TracerProvider trace.TracerProvider
	// MeterProvider creates the meter. Default: otel.GetMeterProvider().
	MeterProvider metric.MeterProvider
}

// durationBuckets suit requests to a provider and logins, in seconds.
var durationBuckets = []float64{0.005, 0.01, 0.025, 0.05, 0.075, 0.1, 0.25, 0.5, 0.75, 1, 2.5, 5, 7.5, 10, 30, 60}

var completed = metric.WithAttributeSet(attribute.NewSet(attrOutcome.String("completed")))

// New returns a Trace that records each oidcrp operation as a span and in
// metrics. Set it as oidcrp.Config.Trace.
func New(opts Options) *oidcrp.Trace {
	tp := opts.TracerProvider
	if tp == nil {
		tp = otel.GetTracerProvider()
	}
	meter := meterOf(opts.MeterProvider)
	r := &recorder{tracer: tp.Tracer(scopeName)}
	var err error
	if r.ops, err = meter.Int64Counter(metricOperations,
		metric.WithDescription("Operations of the OpenID Connect relying party, by outcome."),
		metric.WithUnit("{operation}")); err != nil {
		otel.Handle(err)
	}
	if r.duration, err = meter.Float64Histogram(metricDuration,
		metric.WithDescription("Duration of operations of the OpenID Connect relying party."),
		metric.WithUnit("s"),
		metric.WithExplicitBucketBoundaries(durationBuckets...)); err != nil {
		otel.Handle(err)
	}
	if r.logins, err = meter.Int64Counter(metricLogins,
		metric.WithDescription("Logins (callbacks from the provider), completed or rejected."),
		metric.WithUnit("{login}")); err != nil {
		otel.Handle(err)
	}
	// A meter that failed to create an instrument may return nil.
	if r.ops == nil {
		r.ops = noop.Int64Counter{}
	}
	if r.duration == nil {
		r.duration = noop.Float64Histogram{}
	}
	if r.logins == nil {
		r.logins = noop.Int64Counter{}
	}
	return &oidcrp.Trace{Start: r.start, Stop: r.stop, Exception: r.exception}
}

type recorder struct {
	tracer   trace.Tracer
	ops      metric.Int64Counter
	duration metric.Float64Histogram
	logins   metric.Int64Counter
}

// spanKey holds the span started for an operation, so that Stop and
// Exception end that span and never one of an enclosing operation or of the
// application.
type spanKey struct{}

type opSpan struct {
	op   string
	span trace.Span
}

func kind(op string) trace.SpanKind {
	switch op {
	case "login_start", "login", "logout":
		return trace.SpanKindInternal
	case "discovery", "jwks", "registration", "registration_read",
		"registration_update", "registration_delete", "par", "token_exchange", "refresh", "userinfo":
		return trace.SpanKindClient
	}
	return trace.SpanKindInternal
}

func (r *recorder) start(ctx context.Context, ev oidcrp.Event) context.Context {
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, attrIssuer.String(ev.Issuer))
	if ev.Tenant != "" {
		attrs = append(attrs, attrTenant.String(ev.Tenant))
	}
	if ev.ClientID != "" {
		attrs = append(attrs, attrClientID.String(ev.ClientID))
	}
	attrs = append(attrs, attrOperation.String(string(ev.Op)))
	ctx, span := r.tracer.Start(ctx, "oidcrp."+string(ev.Op),
		trace.WithSpanKind(kind(ev.Op)), trace.WithAttributes(attrs...))
	return context.WithValue(ctx, spanKey{}, opSpan{op: ev.Op, span: span})
}

// span returns the span Start began for ev, if ctx carries it.
func span(ctx context.Context, ev oidcrp.Event) trace.Span {
	if s, ok := ctx.Value(spanKey{}).(opSpan); ok && s.op == ev.Op {
		return s.span
	}
	return nil
}

func (r *recorder) stop(ctx context.Context, ev oidcrp.Event) {
	if s := span(ctx, ev); s != nil {
		s.End()
	}
	r.record(ctx, ev, "ok")
	if ev.Op == "login" {
		r.logins.Add(ctx, 1, completed)
	}
}

func (r *recorder) exception(ctx context.Context, ev oidcrp.Event) {
	if s := span(ctx, ev); s != nil {
		if ev.Reason != "" {
			s.SetAttributes(attrReason.String(ev.Reason))
		}
		desc := ev.Reason
		if ev.Err != nil {
			s.RecordError(ev.Err)
			desc = ev.Err.Error()
		}
		s.SetStatus(codes.Error, desc)
		s.End()
	}
	r.record(ctx, ev, "error")
	if ev.Op == "login" {
		attrs := []attribute.KeyValue{attrOutcome.String("rejected")}
		if ev.Reason != "" {
			attrs = append(attrs, attrReason.String(ev.Reason))
		}
		r.logins.Add(ctx, 1, metric.WithAttributeSet(attribute.NewSet(attrs...)))
	}
}

// record counts the operation and its duration.
func (r *recorder) record(ctx context.Context, ev oidcrp.Event, outcome string) {
	attrs := make([]attribute.KeyValue, 0, 4)
	attrs = append(attrs, attrOperation.String(string(ev.Op)), attrOutcome.String(outcome))
	if ev.Reason != "" {
		attrs = append(attrs, attrReason.String(ev.Reason))
	}
	attrs = append(attrs, attrIssuer.String(ev.Issuer))
	set := metric.WithAttributeSet(attribute.NewSet(attrs...))
	r.ops.Add(ctx, 1, set)
	r.duration.Record(ctx, ev.Duration.Seconds(), set)
}
