package oidcrp

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"sync/atomic"
	"time"
)

// Op names an operation reported to a [Trace].
type Op string

// Operations reported to a Trace. Each is a span: Start, then Stop or
// Exception.
const (
	OpDiscovery          Op = "discovery"           // fetching the discovery document
	OpJWKS               Op = "jwks"                // fetching the provider's keys
	OpRegistration       Op = "registration"        // RFC 7591 registration
	OpRegistrationRead   Op = "registration_read"   // RFC 7592 read
	OpRegistrationUpdate Op = "registration_update" // RFC 7592 update
	OpRegistrationDelete Op = "registration_delete" // RFC 7592 delete
	OpTokenExchange      Op = "token_exchange"      // authorization code for tokens
	OpRefresh            Op = "refresh"             // refresh token for tokens (Config.KeepTokens)
	OpUserInfo           Op = "userinfo"            // userinfo request
	OpLoginStart         Op = "login_start"         // redirecting a browser to the provider
	OpLogin              Op = "login"               // a callback: Stop when the login completed, Exception when rejected
	OpLogout             Op = "logout"              // ending a session
)

// Event describes an operation. It never carries secrets, codes or tokens.
type Event struct {
	Op       Op
	Issuer   string
	Tenant   string        // "" for a single-tenant RP
	ClientID string        // "" before registration
	Reason   string        // for a rejected login: an AuthError reason such as "state_mismatch"
	Duration time.Duration // set on Stop and Exception
	Err      error         // set on Exception
}

// Trace receives events of everything the relying party does on its own
// with the provider and of every login, in the spirit of
// net/http/httptrace.ClientTrace. Every field is optional. Events accompany
// provider requests and logins only, never an authenticated request, so
// tracing adds nothing to the cost of serving signed-in users.
type Trace struct {
	// Start is called when an operation begins. The context it returns, if
	// not nil, is passed to Stop or Exception and used for the operation's
	// requests, so a span can be carried.
	Start func(ctx context.Context, ev Event) context.Context
	// Stop is called when an operation succeeded.
	Stop func(ctx context.Context, ev Event)
	// Exception is called when an operation failed.
	Exception func(ctx context.Context, ev Event)
}

// span starts an operation; end reports its outcome to the Trace, if any,
// and logs it at debug level.
func (rp *RP) span(ctx context.Context, op Op, clientID string) (context.Context, func(err error)) {
	t := rp.cfg.Trace
	ev := Event{Op: op, Issuer: rp.cfg.Issuer, Tenant: rp.tenant, ClientID: clientID}
	if t != nil && t.Start != nil {
		if c := t.Start(ctx, ev); c != nil {
			ctx = c
		}
	}
	start := time.Now()
	return ctx, func(err error) {
		ev.Duration = time.Since(start)
		if err == nil {
			rp.log.Debug("oidcrp: operation done", "op", string(op), "client_id", clientID, "duration", ev.Duration)
			if t != nil && t.Stop != nil {
				t.Stop(ctx, ev)
			}
			return
		}
		ev.Err = err
		var ae *AuthError
		if errors.As(err, &ae) {
			ev.Reason = ae.Reason
		}
		rp.log.Debug("oidcrp: operation failed", "op", string(op), "client_id", clientID, "duration", ev.Duration, "reason", ev.Reason, "err", err)
		if t != nil && t.Exception != nil {
			t.Exception(ctx, ev)
		}
	}
}

// jwksTracer reports the requests go-oidc makes for the provider's keys.
type jwksTracer struct {
	rp   *RP
	next http.RoundTripper
	url  atomic.Pointer[string]
}

func (j *jwksTracer) RoundTrip(req *http.Request) (*http.Response, error) {
	if u := j.url.Load(); u == nil || req.URL.String() != *u {
		return j.next.RoundTrip(req)
	}
	ctx, end := j.rp.span(req.Context(), OpJWKS, j.rp.ClientID())
	resp, err := j.next.RoundTrip(req.WithContext(ctx))
	if err == nil && resp.StatusCode != http.StatusOK {
		end(errors.New("oidcrp: jwks: HTTP " + http.StatusText(resp.StatusCode)))
	} else {
		end(err)
	}
	return resp, err
}

// traceJWKS wraps the HTTP client so that key fetches are traced.
func (rp *RP) traceJWKS() {
	if rp.cfg.Trace == nil {
		return
	}
	next := rp.httpClient.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c := *rp.httpClient
	rp.jwks = &jwksTracer{rp: rp, next: next}
	c.Transport = rp.jwks
	rp.httpClient = &c
}

// Status is the state of a relying party's registration, for readiness
// probes and debug pages. It holds no secrets.
type Status struct {
	Issuer          string    `json:"issuer"`
	Tenant          string    `json:"tenant,omitempty"`
	Ready           bool      `json:"ready"`                      // logins can start now
	ClientID        string    `json:"client_id,omitempty"`        // in use
	AuthMethod      string    `json:"auth_method,omitempty"`      // token endpoint authentication
	RegisteredAt    time.Time `json:"registered_at,omitzero"`     // client or current secret obtained
	SecretExpiresAt time.Time `json:"secret_expires_at,omitzero"` // zero: never
	LastError       string    `json:"last_error,omitempty"`       // of the last failed setup
	RetryAt         time.Time `json:"retry_at,omitzero"`          // next setup attempt after a failure

	// SecretExpiresIn is SecretExpiresAt less the time of the Status call:
	// zero when the secret never expires (or there is none yet), negative
	// once it has expired. In JSON it is "secret_expires_in", in whole
	// seconds, absent when the secret never expires.
	SecretExpiresIn time.Duration `json:"-"`
}

// Status reports the registration state without any I/O.
func (rp *RP) Status() Status {
	s := Status{Issuer: rp.cfg.Issuer, Tenant: rp.tenant}
	if c := rp.cur.Load(); c != nil {
		s.Ready = true
		s.ClientID, s.AuthMethod = c.creds.ClientID, c.creds.authMethod()
		s.RegisteredAt, s.SecretExpiresAt = c.creds.RegisteredAt, c.creds.ClientSecretExpiresAt
		if !s.SecretExpiresAt.IsZero() {
			if s.SecretExpiresIn = s.SecretExpiresAt.Sub(rp.now()); s.SecretExpiresIn == 0 {
				s.SecretExpiresIn = -1 // expiring now; zero means never
			}
		}
	}
	rp.setup.mu.Lock()
	if rp.setup.lastErr != nil {
		s.LastError = rp.setup.lastErr.Error()
		s.RetryAt = rp.setup.retryAt
	}
	rp.setup.mu.Unlock()
	return s
}

// MarshalJSON adds secret_expires_in, SecretExpiresIn in whole seconds
// (rounded down), when the secret expires.
func (s Status) MarshalJSON() ([]byte, error) {
	type plain Status // without this method
	out := struct {
		plain
		SecretExpiresIn *int64 `json:"secret_expires_in,omitempty"`
	}{plain: plain(s)}
	if !s.SecretExpiresAt.IsZero() {
		secs := int64(s.SecretExpiresIn / time.Second)
		if s.SecretExpiresIn%time.Second < 0 {
			secs--
		}
		out.SecretExpiresIn = &secs
	}
	return json.Marshal(out)
}
