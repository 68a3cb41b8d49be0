package oidcrpotel_test

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/internal/devop"
	oidcrpotel "github.com/oidcrp/oidcrp/otel"
	"go.opentelemetry.io/otel"
	"go.opentelemetry.io/otel/attribute"
	"go.opentelemetry.io/otel/codes"
	metricnoop "go.opentelemetry.io/otel/metric/noop"
	sdkmetric "go.opentelemetry.io/otel/sdk/metric"
	"go.opentelemetry.io/otel/sdk/metric/metricdata"
	sdktrace "go.opentelemetry.io/otel/sdk/trace"
	"go.opentelemetry.io/otel/sdk/trace/tracetest"
	"go.opentelemetry.io/otel/trace"
	tracenoop "go.opentelemetry.io/otel/trace/noop"
)

// env is a provider and an application protected by an RP traced by
// oidcrpotel into an in-memory span recorder and a manual metric reader,
// and a browser that follows redirects.
type env struct {
	t       *testing.T
	op      *devop.Provider
	app     *httptest.Server
	rp      *oidcrp.RP
	browser *http.Client
	spans   *tracetest.SpanRecorder
	reader  *sdkmetric.ManualReader

	mu       sync.Mutex
	requests []serverSpan // spans the application started per request
}

type serverSpan struct {
	path string
	sc   trace.SpanContext
}

// newEnv starts the provider and the application. With serverSpans, the
// application starts a span for every request before the RP sees it, as
// otelhttp would.
func newEnv(t *testing.T, opts devop.Options, serverSpans bool) *env {
	t.Helper()
	opts.AutoLogin = true
	e := &env{t: t, spans: tracetest.NewSpanRecorder(), reader: sdkmetric.NewManualReader()}
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(e.spans))
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(e.reader))
	t.Cleanup(func() {
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})

	e.op = devop.New(opts)
	opSrv := httptest.NewTLSServer(e.op)
	t.Cleanup(opSrv.Close)
	e.op.SetIssuer(opSrv.URL)

	e.app = httptest.NewUnstartedServer(nil)
	e.app.StartTLS()
	t.Cleanup(e.app.Close)
	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:      e.op.Issuer(),
		RedirectURL: e.app.URL + "/auth/callback",
		HTTPClient:  opSrv.Client(),
		Logger:      slog.New(slog.DiscardHandler),
		Trace:       oidcrpotel.New(oidcrpotel.Options{TracerProvider: tp, MeterProvider: mp}),
	})
	if err != nil {
		t.Fatal(err)
	}
	e.rp = rp
	var h http.Handler = rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcrp.UserFromContext(r.Context())
		io.WriteString(w, "hello "+u.Subject)
	}))
	if serverSpans {
		next, tracer := h, tp.Tracer("test/http")
		h = http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			ctx, span := tracer.Start(r.Context(), r.Method+" "+r.URL.Path, trace.WithSpanKind(trace.SpanKindServer))
			defer span.End()
			e.mu.Lock()
			e.requests = append(e.requests, serverSpan{r.URL.Path, span.SpanContext()})
			e.mu.Unlock()
			next.ServeHTTP(w, r.WithContext(ctx))
		})
	}
	e.app.Config.Handler = h

	jar, _ := cookiejar.New(nil)
	e.browser = &http.Client{Jar: jar, Transport: opSrv.Client().Transport}
	return e
}

// do makes a browser request, following redirects, and returns the final
// status.
func (e *env) do(method, path string) int {
	e.t.Helper()
	req, err := http.NewRequest(method, e.app.URL+path, nil)
	if err != nil {
		e.t.Fatal(err)
	}
	req.Header.Set("Accept", "text/html,application/xhtml+xml")
	resp, err := e.browser.Do(req)
	if err != nil {
		e.t.Fatal(err)
	}
	defer resp.Body.Close()
	_, _ = io.Copy(io.Discard, resp.Body)
	return resp.StatusCode
}

func (e *env) login() {
	e.t.Helper()
	if st := e.do(http.MethodGet, "/"); st != http.StatusOK {
		e.t.Fatalf("login ended with %d", st)
	}
}

// take returns the spans ended so far and forgets them.
func (e *env) take() []sdktrace.ReadOnlySpan {
	out := e.spans.Ended()
	e.spans.Reset()
	return out
}

// serverSpans returns the spans the application started for path.
func (e *env) serverSpans(path string) []trace.SpanContext {
	e.mu.Lock()
	defer e.mu.Unlock()
	var out []trace.SpanContext
	for _, s := range e.requests {
		if s.path == path {
			out = append(out, s.sc)
		}
	}
	return out
}

func (e *env) metrics() metricdata.ResourceMetrics {
	e.t.Helper()
	var rm metricdata.ResourceMetrics
	if err := e.reader.Collect(context.Background(), &rm); err != nil {
		e.t.Fatal(err)
	}
	return rm
}

func byName(t *testing.T, spans []sdktrace.ReadOnlySpan, name string) sdktrace.ReadOnlySpan {
	t.Helper()
	var found sdktrace.ReadOnlySpan
	for _, s := range spans {
		if s.Name() == name {
			if found != nil {
				t.Errorf("two %s spans", name)
			}
			found = s
		}
	}
	if found == nil {
		t.Fatalf("no %s span among %v", name, names(spans))
	}
	return found
}

func names(spans []sdktrace.ReadOnlySpan) []string {
	var out []string
	for _, s := range spans {
		out = append(out, s.Name())
	}
	return out
}

func attrs(s sdktrace.ReadOnlySpan) map[attribute.Key]string {
	m := map[attribute.Key]string{}
	for _, kv := range s.Attributes() {
		m[kv.Key] = kv.Value.String()
	}
	return m
}

func isChild(child sdktrace.ReadOnlySpan, parent trace.SpanContext) bool {
	return child.Parent().IsValid() && child.Parent().TraceID() == parent.TraceID() && child.Parent().SpanID() == parent.SpanID()
}

func metricByName(t *testing.T, rm metricdata.ResourceMetrics, name string) metricdata.Metrics {
	t.Helper()
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			if m.Name == name {
				return m
			}
		}
	}
	t.Fatalf("no metric %s", name)
	return metricdata.Metrics{}
}

// sum is the value of the counter's data point with exactly kvs.
func sum(t *testing.T, rm metricdata.ResourceMetrics, name string, kvs ...attribute.KeyValue) int64 {
	t.Helper()
	want := attribute.NewSet(kvs...)
	data, ok := metricByName(t, rm, name).Data.(metricdata.Sum[int64])
	if !ok {
		t.Fatalf("%s is not an int64 sum", name)
	}
	for _, dp := range data.DataPoints {
		if dp.Attributes.Equals(&want) {
			return dp.Value
		}
	}
	return 0
}

func okAttrs(issuer string, op string) []attribute.KeyValue {
	return []attribute.KeyValue{
		attribute.String("oidcrp.operation", string(op)),
		attribute.String("oidcrp.outcome", "ok"),
		attribute.String("oidc.issuer", issuer),
	}
}

func TestLoginSpansAndMetrics(t *testing.T) {
	e := newEnv(t, devop.Options{}, true)
	e.login()
	spans := e.take()
	issuer := e.op.Issuer()
	clientID := e.op.Clients()[0].ID

	loginStart := byName(t, spans, "oidcrp.login_start")
	discovery := byName(t, spans, "oidcrp.discovery")
	registration := byName(t, spans, "oidcrp.registration")
	login := byName(t, spans, "oidcrp.login")
	exchange := byName(t, spans, "oidcrp.token_exchange")
	jwks := byName(t, spans, "oidcrp.jwks")
	userinfo := byName(t, spans, "oidcrp.userinfo")

	// Parents: the application's request spans, then the operations.
	if got := e.serverSpans("/"); len(got) == 0 || !isChild(loginStart, got[0]) {
		t.Errorf("login_start is not a child of the request's span: parent %v", loginStart.Parent())
	}
	if got := e.serverSpans("/auth/callback"); len(got) != 1 || !isChild(login, got[0]) {
		t.Errorf("login is not a child of the callback request's span: parent %v", login.Parent())
	}
	for _, s := range []sdktrace.ReadOnlySpan{discovery, registration} {
		if !isChild(s, loginStart.SpanContext()) {
			t.Errorf("%s is not a child of login_start", s.Name())
		}
	}
	for _, s := range []sdktrace.ReadOnlySpan{exchange, userinfo} {
		if !isChild(s, login.SpanContext()) {
			t.Errorf("%s is not a child of login", s.Name())
		}
	}
	// go-oidc fetches keys with the context the provider was created with,
	// not the verification's: the jwks span starts a trace of its own.
	if jwks.Parent().IsValid() {
		t.Errorf("jwks span has parent %v; expected a root span", jwks.Parent())
	}
	if jwks.SpanContext().TraceID() == login.SpanContext().TraceID() {
		t.Errorf("jwks span is in the login's trace")
	}
	if jwks.StartTime().Before(exchange.EndTime()) || jwks.EndTime().After(login.EndTime()) {
		t.Errorf("jwks span is not between the token exchange and the end of the login")
	}

	// Kinds and attributes.
	for _, tc := range []struct {
		s        sdktrace.ReadOnlySpan
		op       string
		kind     trace.SpanKind
		clientID string
	}{
		{loginStart, "login_start", trace.SpanKindInternal, ""}, // not registered yet
		{discovery, "discovery", trace.SpanKindClient, ""},
		{registration, "registration", trace.SpanKindClient, ""},
		{login, "login", trace.SpanKindInternal, clientID},
		{exchange, "token_exchange", trace.SpanKindClient, clientID},
		{jwks, "jwks", trace.SpanKindClient, clientID},
		{userinfo, "userinfo", trace.SpanKindClient, clientID},
	} {
		a := attrs(tc.s)
		if tc.s.SpanKind() != tc.kind {
			t.Errorf("%s: kind %v, want %v", tc.s.Name(), tc.s.SpanKind(), tc.kind)
		}
		if a["oidc.issuer"] != issuer || a["oidcrp.operation"] != string(tc.op) {
			t.Errorf("%s: attributes %v", tc.s.Name(), a)
		}
		if id, has := a["oidc.client_id"]; id != tc.clientID || has != (tc.clientID != "") {
			t.Errorf("%s: oidc.client_id %q, want %q", tc.s.Name(), id, tc.clientID)
		}
		for _, k := range []attribute.Key{"oidc.tenant", "oidcrp.reason"} {
			if _, has := a[k]; has {
				t.Errorf("%s: has %s", tc.s.Name(), k)
			}
		}
		if tc.s.Status().Code != codes.Unset || len(tc.s.Events()) != 0 {
			t.Errorf("%s: status %v, events %v", tc.s.Name(), tc.s.Status(), tc.s.Events())
		}
		if tc.s.InstrumentationScope().Name != "github.com/oidcrp/oidcrp/otel" {
			t.Errorf("%s: scope %q", tc.s.Name(), tc.s.InstrumentationScope().Name)
		}
	}

	rm := e.metrics()
	ops := []string{"login_start", "discovery", "registration", "login",
		"token_exchange", "jwks", "userinfo"}
	for _, op := range ops {
		if n := sum(t, rm, "oidcrp.operations", okAttrs(issuer, op)...); n != 1 {
			t.Errorf("oidcrp.operations{%s,ok} = %d, want 1", op, n)
		}
	}
	if n := sum(t, rm, "oidcrp.logins", attribute.String("oidcrp.outcome", "completed")); n != 1 {
		t.Errorf("oidcrp.logins{completed} = %d, want 1", n)
	}
	dur := metricByName(t, rm, "oidcrp.operation.duration")
	if dur.Unit != "s" {
		t.Errorf("duration unit %q", dur.Unit)
	}
	hist, isHist := dur.Data.(metricdata.Histogram[float64])
	if !isHist {
		t.Fatalf("duration is %T", dur.Data)
	}
	counts := map[string]uint64{}
	for _, dp := range hist.DataPoints {
		op, _ := dp.Attributes.Value("oidcrp.operation")
		counts[op.AsString()] += dp.Count
		if dp.Sum <= 0 || dp.Sum > 60 {
			t.Errorf("duration of %s: sum %v s", op.AsString(), dp.Sum)
		}
	}
	for _, op := range ops {
		if counts[string(op)] != 1 {
			t.Errorf("duration count of %s = %d, want 1", op, counts[string(op)])
		}
	}
	assertNoSecrets(t, e, spans, rm)

	// A second login (keys cached) and a logout.
	e.browser.Jar, _ = cookiejar.New(nil)
	e.login()
	if st := e.do(http.MethodPost, "/logout"); st != http.StatusOK {
		t.Fatalf("logout ended with %d", st)
	}
	spans = e.take()
	logout := byName(t, spans, "oidcrp.logout")
	if logout.SpanKind() != trace.SpanKindInternal || attrs(logout)["oidc.client_id"] != clientID {
		t.Errorf("logout span: kind %v, attributes %v", logout.SpanKind(), attrs(logout))
	}
	if got := e.serverSpans("/logout"); len(got) == 0 || !isChild(logout, got[0]) {
		t.Errorf("logout is not a child of the request's span")
	}
	rm = e.metrics()
	for op, want := range map[string]int64{
		"login_start": 2, "discovery": 1, "registration": 1, "login": 2,
		"token_exchange": 2, "jwks": 1, "userinfo": 2, "logout": 1,
	} {
		if n := sum(t, rm, "oidcrp.operations", okAttrs(issuer, op)...); n != want {
			t.Errorf("after a second login: oidcrp.operations{%s,ok} = %d, want %d", op, n, want)
		}
	}
	if n := sum(t, rm, "oidcrp.logins", attribute.String("oidcrp.outcome", "completed")); n != 2 {
		t.Errorf("oidcrp.logins{completed} = %d, want 2", n)
	}
	assertNoSecrets(t, e, spans, rm)
}

func TestRejectedLogin(t *testing.T) {
	e := newEnv(t, devop.Options{IDToken: func(c, h map[string]any) { c["nonce"] = "x" }}, false)
	if st := e.do(http.MethodGet, "/"); st == http.StatusOK {
		t.Fatal("login with a wrong nonce succeeded")
	}
	spans := e.take()
	issuer := e.op.Issuer()

	login := byName(t, spans, "oidcrp.login")
	if login.Parent().IsValid() {
		t.Errorf("login span has parent %v without a request span", login.Parent())
	}
	if login.Status().Code != codes.Error {
		t.Errorf("login status %v", login.Status())
	}
	if r := attrs(login)["oidcrp.reason"]; r != "invalid_id_token" {
		t.Errorf("oidcrp.reason %q", r)
	}
	if ev := login.Events(); len(ev) != 1 || ev[0].Name != "exception" {
		t.Errorf("login events %v; want the recorded error", ev)
	}
	if s := byName(t, spans, "oidcrp.token_exchange"); !isChild(s, login.SpanContext()) || s.Status().Code != codes.Unset {
		t.Errorf("token_exchange: parent %v, status %v", s.Parent(), s.Status())
	}

	rm := e.metrics()
	rejected := []attribute.KeyValue{attribute.String("oidcrp.outcome", "rejected"), attribute.String("oidcrp.reason", "invalid_id_token")}
	if n := sum(t, rm, "oidcrp.logins", rejected...); n != 1 {
		t.Errorf("oidcrp.logins{rejected,invalid_id_token} = %d, want 1", n)
	}
	if n := sum(t, rm, "oidcrp.logins", attribute.String("oidcrp.outcome", "completed")); n != 0 {
		t.Errorf("oidcrp.logins{completed} = %d, want 0", n)
	}
	if n := sum(t, rm, "oidcrp.operations",
		attribute.String("oidcrp.operation", "login"), attribute.String("oidcrp.outcome", "error"),
		attribute.String("oidcrp.reason", "invalid_id_token"), attribute.String("oidc.issuer", issuer)); n != 1 {
		t.Errorf("oidcrp.operations{login,error,invalid_id_token} = %d, want 1", n)
	}
	if n := sum(t, rm, "oidcrp.operations", okAttrs(issuer, "token_exchange")...); n != 1 {
		t.Errorf("oidcrp.operations{token_exchange,ok} = %d, want 1", n)
	}
	assertNoSecrets(t, e, spans, rm)
}

// assertNoSecrets checks that no span (name, attributes, events, status)
// and no metric attribute carries a client secret, registration access
// token, code, code verifier, state or nonce.
func assertNoSecrets(t *testing.T, e *env, spans []sdktrace.ReadOnlySpan, rm metricdata.ResourceMetrics) {
	t.Helper()
	var secrets []string
	for _, c := range e.op.Clients() {
		secrets = append(secrets, c.Secret, c.RegistrationAccessToken)
	}
	if form, _ := e.op.LastTokenRequest(); form != nil {
		secrets = append(secrets, form.Get("code"), form.Get("code_verifier"))
	}
	if q := e.op.LastAuthorizeRequest(); q != nil {
		secrets = append(secrets, q.Get("state"), q.Get("nonce"), q.Get("code_challenge"))
	}
	if len(secrets) < 2 || secrets[0] == "" {
		t.Fatal("no secrets to look for")
	}
	var values []string
	add := func(kvs ...attribute.KeyValue) {
		for _, kv := range kvs {
			values = append(values, kv.Value.String())
		}
	}
	for _, s := range spans {
		values = append(values, s.Name(), s.Status().Description)
		add(s.Attributes()...)
		for _, ev := range s.Events() {
			add(ev.Attributes...)
		}
	}
	for _, sm := range rm.ScopeMetrics {
		for _, m := range sm.Metrics {
			switch d := m.Data.(type) {
			case metricdata.Sum[int64]:
				for _, dp := range d.DataPoints {
					add(dp.Attributes.ToSlice()...)
				}
			case metricdata.Histogram[float64]:
				for _, dp := range d.DataPoints {
					add(dp.Attributes.ToSlice()...)
				}
			}
		}
	}
	for _, v := range values {
		for _, s := range secrets {
			if s != "" && strings.Contains(v, s) {
				t.Errorf("a secret appears in %q", v)
			}
		}
	}
}

// TestHooks drives the hooks directly: kinds of every operation, the
// tenant attribute, failures without a reason, and Stop with a context
// that does not carry the operation's span.
func TestHooks(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	reader := sdkmetric.NewManualReader()
	tr := oidcrpotel.New(oidcrpotel.Options{TracerProvider: tp, MeterProvider: sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))})

	kinds := map[string]trace.SpanKind{
		"discovery": trace.SpanKindClient, "jwks": trace.SpanKindClient,
		"registration": trace.SpanKindClient, "registration_read": trace.SpanKindClient,
		"registration_update": trace.SpanKindClient, "registration_delete": trace.SpanKindClient,
		"token_exchange": trace.SpanKindClient, "refresh": trace.SpanKindClient, "userinfo": trace.SpanKindClient,
		"login_start": trace.SpanKindInternal, "login": trace.SpanKindInternal, "logout": trace.SpanKindInternal,
	}
	for op, kind := range kinds {
		ev := oidcrp.Event{Op: op, Issuer: "https://op.example", Tenant: "acme", ClientID: "c1"}
		ctx := tr.Start(context.Background(), ev)
		span := trace.SpanFromContext(ctx)
		if !span.SpanContext().IsValid() || !span.IsRecording() {
			t.Fatalf("%s: no span in the context returned by Start", op)
		}
		tr.Stop(ctx, ev)
		if span.IsRecording() {
			t.Errorf("%s: span not ended by Stop", op)
		}
		s := sr.Ended()[len(sr.Ended())-1]
		a := attrs(s)
		if s.Name() != "oidcrp."+string(op) || s.SpanKind() != kind || a["oidc.tenant"] != "acme" || a["oidc.client_id"] != "c1" {
			t.Errorf("%s: name %s, kind %v, attributes %v", op, s.Name(), s.SpanKind(), a)
		}
	}

	// A failure without a reason.
	ev := oidcrp.Event{Op: "registration_read", Issuer: "https://op.example"}
	ctx := tr.Start(context.Background(), ev)
	ev.Err = errors.New("HTTP 500")
	tr.Exception(ctx, ev)
	s := sr.Ended()[len(sr.Ended())-1]
	if _, has := attrs(s)["oidcrp.reason"]; has || s.Status().Code != codes.Error || s.Status().Description != "HTTP 500" {
		t.Errorf("failed registration_read: status %v, attributes %v", s.Status(), attrs(s))
	}

	// Stop with the context of an enclosing operation leaves its span alone.
	outer := oidcrp.Event{Op: "login", Issuer: "https://op.example"}
	octx := tr.Start(context.Background(), outer)
	tr.Stop(octx, oidcrp.Event{Op: "userinfo", Issuer: "https://op.example"})
	if !trace.SpanFromContext(octx).IsRecording() {
		t.Error("Stop of userinfo ended the login span")
	}
	tr.Stop(octx, outer)
	if trace.SpanFromContext(octx).IsRecording() {
		t.Error("login span not ended")
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if n := sum(t, rm, "oidcrp.operations", attribute.String("oidcrp.operation", "registration_read"),
		attribute.String("oidcrp.outcome", "error"), attribute.String("oidc.issuer", "https://op.example")); n != 1 {
		t.Errorf("oidcrp.operations{registration_read,error} = %d, want 1", n)
	}
	// A login failing without a reason is rejected, without a reason attribute.
	ev = oidcrp.Event{Op: "login", Issuer: "https://op.example", Err: errors.New("unavailable")}
	tr.Exception(tr.Start(context.Background(), ev), ev)
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if n := sum(t, rm, "oidcrp.logins", attribute.String("oidcrp.outcome", "rejected")); n != 1 {
		t.Errorf("oidcrp.logins{rejected} = %d, want 1", n)
	}
}

// TestDefaults checks that Options{} records to the global providers
// registered with otel.SetTracerProvider and otel.SetMeterProvider, under the
// package's instrumentation scope.
func TestDefaults(t *testing.T) {
	sr := tracetest.NewSpanRecorder()
	tp := sdktrace.NewTracerProvider(sdktrace.WithSpanProcessor(sr))
	reader := sdkmetric.NewManualReader()
	mp := sdkmetric.NewMeterProvider(sdkmetric.WithReader(reader))
	otel.SetTracerProvider(tp)
	otel.SetMeterProvider(mp)
	t.Cleanup(func() {
		otel.SetTracerProvider(tracenoop.NewTracerProvider())
		otel.SetMeterProvider(metricnoop.NewMeterProvider())
		_ = tp.Shutdown(context.Background())
		_ = mp.Shutdown(context.Background())
	})

	tr := oidcrpotel.New(oidcrpotel.Options{})
	ev := oidcrp.Event{Op: "discovery", Issuer: "https://op.example"}
	ctx := tr.Start(context.Background(), ev)
	tr.Stop(ctx, ev)
	ev.Err = errors.New("x")
	tr.Exception(tr.Start(context.Background(), ev), ev)

	ended := sr.Ended()
	if len(ended) != 2 {
		t.Fatalf("the global tracer provider recorded %d spans, want 2", len(ended))
	}
	for i, s := range ended {
		if s.Name() != "oidcrp.discovery" || s.InstrumentationScope().Name != "github.com/oidcrp/oidcrp/otel" {
			t.Errorf("span %d: name %q, scope %q; want oidcrp.discovery from github.com/oidcrp/oidcrp/otel",
				i, s.Name(), s.InstrumentationScope().Name)
		}
	}
	if ended[0].Status().Code == codes.Error || ended[1].Status().Code != codes.Error {
		t.Errorf("span statuses %v, %v; want unset then error", ended[0].Status(), ended[1].Status())
	}

	var rm metricdata.ResourceMetrics
	if err := reader.Collect(context.Background(), &rm); err != nil {
		t.Fatal(err)
	}
	if len(rm.ScopeMetrics) != 1 || rm.ScopeMetrics[0].Scope.Name != "github.com/oidcrp/oidcrp/otel" {
		t.Errorf("the global meter provider has scopes %+v, want only github.com/oidcrp/oidcrp/otel", rm.ScopeMetrics)
	}
	if n := sum(t, rm, "oidcrp.operations", okAttrs("https://op.example", "discovery")...); n != 1 {
		t.Errorf("oidcrp.operations{discovery,ok} on the global meter provider = %d, want 1", n)
	}
	if n := sum(t, rm, "oidcrp.operations", attribute.String("oidcrp.operation", "discovery"),
		attribute.String("oidcrp.outcome", "error"), attribute.String("oidc.issuer", "https://op.example")); n != 1 {
		t.Errorf("oidcrp.operations{discovery,error} on the global meter provider = %d, want 1", n)
	}
}
