package oidcrp

import (
	"encoding/json"
	"errors"
	"fmt"
	"math"
	"net/http"
	"strconv"
	"strings"
	"time"
)

// Reason is the category of an [AuthError]. Its value is also the
// "error" member of the default JSON error response and the reason reported
// to a [Trace].
type Reason string

// Reasons an [AuthError] gives for a refused request or login.
const (
	ReasonLoginRequired  Reason = "login_required"   // no session on a request that needs one
	ReasonBadRequest     Reason = "bad_request"      // a malformed callback or logout request
	ReasonStateMismatch  Reason = "state_mismatch"   // unknown, expired, reused or forged state
	ReasonIssuerMismatch Reason = "iss_mismatch"     // RFC 9207 iss absent or wrong
	ReasonProviderError  Reason = "provider_error"   // the provider answered with error=…
	ReasonInvalidClient  Reason = "invalid_client"   // the provider rejected this client
	ReasonTokenExchange  Reason = "token_exchange"   // the code could not be exchanged
	ReasonInvalidIDToken Reason = "invalid_id_token" // signature, iss, aud, azp, exp, iat, sub or nonce
	ReasonUserInfo       Reason = "userinfo"         // userinfo failed or named another subject
)

// AuthError is a refused request or login. ErrorCode and ErrorDescription
// carry the provider's error response (RFC 6749 §4.1.2.1, §5.2) when there
// was one, named as in x/oauth2's RetrieveError; Err says what else went
// wrong.
type AuthError struct {
	Reason           Reason
	ErrorCode        string // the provider's "error"
	ErrorDescription string // the provider's "error_description"
	Err              error  // the underlying failure, if any
}

// Error implements error.
func (e *AuthError) Error() string {
	var b strings.Builder
	b.WriteString("oidcrp: ")
	b.WriteString(string(e.Reason))
	if e.ErrorCode != "" {
		fmt.Fprintf(&b, ": %s", e.ErrorCode)
	}
	if e.ErrorDescription != "" {
		fmt.Fprintf(&b, ": %s", e.ErrorDescription)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
}

// refusal is an AuthError whose cause is described in words.
func refusal(reason Reason, why string) *AuthError {
	return &AuthError{Reason: reason, Err: errors.New(why)}
}

// Unwrap returns the underlying failure.
func (e *AuthError) Unwrap() error { return e.Err }

func statusOf(err error) int {
	var ae *AuthError
	if errors.As(err, &ae) {
		switch ae.Reason {
		case ReasonTokenExchange, ReasonUserInfo, ReasonInvalidClient:
			return http.StatusBadGateway
		}
	}
	if errors.Is(err, ErrUnavailable) {
		return http.StatusServiceUnavailable
	}
	return http.StatusBadRequest
}

// reject refuses a login attempt: logged at warning level with its reason.
func (rp *RP) reject(w http.ResponseWriter, r *http.Request, status int, err error) {
	reason := ""
	var ae *AuthError
	if errors.As(err, &ae) {
		reason = string(ae.Reason)
	}
	rp.log.Warn("oidcrp: login rejected", "reason", reason, "err", err)
	rp.fail(w, r, status, err)
}

// fail writes an error response through Config.ErrorHandler or the default
// page: HTML for browsers, JSON otherwise. Failures of the provider carry
// Retry-After.
func (rp *RP) fail(w http.ResponseWriter, r *http.Request, status int, err error) {
	if d, ok := retryAfter(err); ok {
		w.Header().Set("Retry-After", strconv.Itoa(int(math.Ceil(max(d.Seconds(), 1)))))
	}
	if rp.cfg.ErrorHandler != nil {
		rp.cfg.ErrorHandler(w, r, status, err)
		return
	}
	msg, reason := publicMessage(status, err)
	w.Header().Set("Cache-Control", "no-store")
	if strings.Contains(r.Header.Get("Accept"), "text/html") {
		writePage(w, status, errorView(status, err))
		return
	}
	w.Header().Set("Content-Type", "application/json")
	w.WriteHeader(status)
	_ = json.NewEncoder(w).Encode(map[string]string{"error": reason, "error_description": msg})
}

// publicMessage says what went wrong without internal details.
func publicMessage(status int, err error) (msg, reason string) {
	var ae *AuthError
	switch {
	case errors.As(err, &ae):
		reason = string(ae.Reason)
		switch ae.Reason {
		case ReasonLoginRequired:
			return "Sign-in required.", reason
		case ReasonProviderError:
			return "The identity provider refused the sign-in: " + ae.ErrorCode + ".", reason
		case ReasonStateMismatch:
			return "This sign-in link is expired or was not started in this browser. Please sign in again.", reason
		}
		return "The sign-in could not be completed. Please try again.", reason
	case errors.Is(err, ErrUnavailable):
		return "Sign-in is temporarily unavailable. Please try again shortly.", "temporarily_unavailable"
	}
	return http.StatusText(status), "server_error"
}

// unavailableError is a setup failure; it wraps ErrUnavailable and its cause.
type unavailableError struct {
	cause      error
	retryAfter time.Duration
}

func (e *unavailableError) Error() string {
	if e.cause == nil {
		return ErrUnavailable.Error()
	}
	return ErrUnavailable.Error() + ": " + strings.TrimPrefix(e.cause.Error(), "oidcrp: ")
}

func (e *unavailableError) Unwrap() []error { return []error{ErrUnavailable, e.cause} }

// retryAfter returns how long a client should wait after err, if it says.
func retryAfter(err error) (time.Duration, bool) {
	var u *unavailableError
	if errors.As(err, &u) {
		return u.retryAfter, true
	}
	return 0, false
}
