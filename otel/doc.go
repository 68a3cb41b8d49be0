// Package oidcrpotel reports what an [oidcrp.RP] does to OpenTelemetry:
// every operation (discovery, key fetches, registration, token exchange,
// userinfo, login start, login, logout) becomes a span and is counted in
// metrics.
//
// Set the [oidcrp.Trace] returned by [New] as the relying party's
// Config.Trace:
//
//	rp, err := oidcrp.New(oidcrp.Config{
//		Issuer:      "https://login.example.com",
//		RedirectURL: "https://app.example.com/auth/callback",
//		Trace:       oidcrpotel.New(oidcrpotel.Options{}), // global providers
//	})
//	...
//	// With otelhttp, the request's span is the parent of the login spans.
//	http.ListenAndServe(":8080", otelhttp.NewHandler(rp.Require(app), "app"))
//
// # Spans
//
// Each operation is a span named "oidcrp." plus the operation ([oidcrp.Event] Op), such as
// "oidcrp.token_exchange", a child of the span in the context it starts
// with: the request's context for login_start, login and logout, so that a
// span of an HTTP server middleware such as otelhttp is their parent.
// Discovery, registration and par are children of the login_start (or login)
// that needed them; token_exchange and userinfo are children of login,
// refresh a child of the request whose expired session it renewed.
// Key fetches (jwks) are made by go-oidc with a context of its own, so
// their spans start a trace of their own.
//
// Requests to the provider (discovery, jwks, registration*, par,
// token_exchange, refresh, userinfo) are spans of kind Client, the others of kind
// Internal. Spans carry the attributes oidc.issuer, oidc.tenant and
// oidc.client_id (when known) and oidcrp.operation. A failed operation
// records its error, has status Error and, when known, the attribute
// oidcrp.reason, an [oidcrp.AuthError] reason such as "state_mismatch".
//
// # Metrics
//
//   - oidcrp.operations, a counter with the attributes oidcrp.operation,
//     oidcrp.outcome ("ok" or "error"), oidcrp.reason (when known) and
//     oidc.issuer;
//   - oidcrp.operation.duration, a histogram in seconds with the same
//     attributes;
//   - oidcrp.logins, a counter of callbacks with oidcrp.outcome
//     ("completed" or "rejected") and oidcrp.reason (when known);
//   - oidcrp.client_secret.expires_in, a gauge in seconds until each
//     client secret expires, with oidc.issuer and oidc.tenant (when not
//     empty), absent for a secret that never expires. It is read from
//     [oidcrp.RP.Status] or [oidcrp.Tenants.Status] at each collection,
//     once registered with [ObserveStatus].
//
// With the Prometheus exporter these are oidcrp_operations_total,
// oidcrp_operation_duration_seconds, oidcrp_logins_total and
// oidcrp_client_secret_expires_in_seconds; see the example.
//
// Neither spans nor metrics carry secrets, codes or tokens: an
// [oidcrp.Event] has none.
package oidcrpotel
