package oidcrp

import (
	"context"
	"errors"
	"log/slog"
	"net/http"
	"sync/atomic"
	"time"
)

// Operations reported to a Trace, as Event.Op. Each is a span: Start, then
// Stop or Exception.
const (
	opDiscovery          = "discovery"           // fetching the discovery document
	opJWKS               = "jwks"                // fetching the provider's keys
	opRegistration       = "registration"        // RFC 7591 registration
	opRegistrationRead   = "registration_read"   // RFC 7592 read
	opRegistrationUpdate = "registration_update" // RFC 7592 update
	opRegistrationDelete = "registration_delete" // RFC 7592 delete
	opTokenExchange      = "token_exchange"      // authorization code for tokens
	opRefresh            = "refresh"             // refresh token for tokens (Config.KeepTokens)
	opUserInfo           = "userinfo"            // userinfo request
	opLoginStart         = "login_start"         // redirecting a browser to the provider
	opPAR                = "par"                 // pushing an authorization request (RFC 9126)
	opLogin              = "login"               // a callback: Stop when the login completed, Exception when rejected
	opLogout             = "logout"              // ending a session
	opBackchannelLogout  = "backchannel_logout"  // a logout token from the provider
	opFrontchannelLogout = "frontchannel_logout" // a front-channel logout request
	opRevocation         = "revocation"          // revoking a logged-out session's tokens (RFC 7009)
)

// Event describes an operation. It never carries secrets, codes or tokens.
type Event struct {
	// Op names the operation:
	//
	//   - "discovery": fetching the discovery document;
	//   - "jwks": fetching the provider's keys;
	//   - "registration": RFC 7591 registration;
	//   - "registration_read", "registration_update", "registration_delete":
	//     RFC 7592 reads, updates and deletions of the registration;
	//   - "token_exchange": the authorization code for tokens;
	//   - "refresh": a refresh token for tokens (Config.KeepTokens);
	//   - "userinfo": the userinfo request;
	//   - "login_start": redirecting a browser to the provider;
	//   - "par": pushing the authorization request to the provider's
	//     pushed_authorization_request_endpoint (RFC 9126), within
	//     "login_start";
	//   - "login": a callback, stopped when the login completed, an
	//     exception when it was rejected;
	//   - "logout": ending a session;
	//   - "backchannel_logout": a logout token the provider POSTed
	//     (Back-Channel Logout 1.0), an exception when it was refused;
	//   - "frontchannel_logout": a front-channel logout request
	//     (Front-Channel Logout 1.0), an exception when it was refused;
	//   - "revocation": revoking the tokens of a session that was logged
	//     out (RFC 7009, Config.KeepTokens), after the logout's response.
	Op       string
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

// tracer reports operations to a Trace, if any, and logs them at debug
// level.
type tracer struct {
	trace  *Trace
	issuer string
	tenant string
	log    *slog.Logger
	jwks   *jwksTracer // set when tracing
}

// span starts an operation; end reports its outcome.
func (t *tracer) span(ctx context.Context, op, clientID string) (context.Context, func(err error)) {
	tr := t.trace
	ev := Event{Op: op, Issuer: t.issuer, Tenant: t.tenant, ClientID: clientID}
	if tr != nil && tr.Start != nil {
		if c := tr.Start(ctx, ev); c != nil {
			ctx = c
		}
	}
	start := time.Now()
	return ctx, func(err error) {
		ev.Duration = time.Since(start)
		if err == nil {
			t.log.Debug("oidcrp: operation done", "op", op, "client_id", clientID, "duration", ev.Duration)
			if tr != nil && tr.Stop != nil {
				tr.Stop(ctx, ev)
			}
			return
		}
		ev.Err = err
		var ae *AuthError
		if errors.As(err, &ae) {
			ev.Reason = string(ae.Reason)
		}
		t.log.Debug("oidcrp: operation failed", "op", op, "client_id", clientID, "duration", ev.Duration, "reason", ev.Reason, "err", err)
		if tr != nil && tr.Exception != nil {
			tr.Exception(ctx, ev)
		}
	}
}

// jwksTracer reports the requests go-oidc makes for the provider's keys.
type jwksTracer struct {
	tracer   *tracer
	clientID func() string
	next     http.RoundTripper
	url      atomic.Pointer[string]
}

func (j *jwksTracer) RoundTrip(req *http.Request) (*http.Response, error) {
	if u := j.url.Load(); u == nil || req.URL.String() != *u {
		return j.next.RoundTrip(req)
	}
	ctx, end := j.tracer.span(req.Context(), opJWKS, j.clientID())
	resp, err := j.next.RoundTrip(req.WithContext(ctx))
	if err == nil && resp.StatusCode != http.StatusOK {
		end(errors.New("oidcrp: jwks: HTTP " + http.StatusText(resp.StatusCode)))
	} else {
		end(err)
	}
	return resp, err
}

// traceJWKS returns hc wrapped so that key fetches are traced, when a
// Trace is set; clientID names the client in use.
func (t *tracer) traceJWKS(hc *http.Client, clientID func() string) *http.Client {
	if t.trace == nil {
		return hc
	}
	next := hc.Transport
	if next == nil {
		next = http.DefaultTransport
	}
	c := *hc
	t.jwks = &jwksTracer{tracer: t, clientID: clientID, next: next}
	c.Transport = t.jwks
	return &c
}

// jwksURL tells the key-fetch tracer which URL holds the provider's keys.
func (t *tracer) jwksURL(u string) {
	if t.jwks != nil {
		t.jwks.url.Store(&u)
	}
}
