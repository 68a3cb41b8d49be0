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

// Reasons an [AuthError] gives for a refused request or login.
const (
	ReasonLoginRequired  = "login_required"   // no session on a request that needs one
	ReasonBadRequest     = "bad_request"      // malformed callback
	ReasonStateMismatch  = "state_mismatch"   // unknown, expired, reused or forged state
	ReasonIssuerMismatch = "iss_mismatch"     // RFC 9207 iss absent or wrong
	ReasonProviderError  = "provider_error"   // the provider answered with error=…
	ReasonInvalidClient  = "invalid_client"   // the provider rejected this client
	ReasonTokenExchange  = "token_exchange"   // the code could not be exchanged
	ReasonInvalidIDToken = "invalid_id_token" // signature, iss, aud, exp, iat or sub
	ReasonNonceMismatch  = "nonce_mismatch"   // nonce absent or wrong
	ReasonUserInfo       = "userinfo"         // userinfo failed or named another subject
	ReasonSession        = "session"          // the session could not be stored
)

// AuthError is a refused request or login. Code, Description and URI carry
// the provider's error response (RFC 6749 §4.1.2.1) when there was one.
type AuthError struct {
	Reason      string // one of the Reason… constants
	Code        string // the provider's "error"
	Description string
	Err         error // the underlying failure, if any
}

// Error implements error.
func (e *AuthError) Error() string {
	var b strings.Builder
	b.WriteString("oidcrp: ")
	b.WriteString(e.Reason)
	if e.Code != "" {
		fmt.Fprintf(&b, ": %s", e.Code)
	}
	if e.Description != "" {
		fmt.Fprintf(&b, ": %s", e.Description)
	}
	if e.Err != nil {
		fmt.Fprintf(&b, ": %v", e.Err)
	}
	return b.String()
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
		reason = ae.Reason
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
		reason = ae.Reason
		switch ae.Reason {
		case ReasonLoginRequired:
			return "Sign-in required.", reason
		case ReasonProviderError:
			return "The identity provider refused the sign-in: " + ae.Code + ".", reason
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
