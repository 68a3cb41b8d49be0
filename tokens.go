package oidcrp

import (
	"bufio"
	"context"
	"errors"
	"io"
	"net"
	"net/http"
	"sync"
	"sync/atomic"

	"golang.org/x/oauth2"
)

// Errors of [UserTokenSource] and [UserClient], and of the tokens they
// return.
var (
	// ErrNoUser means that the context carries no signed-in user: the
	// handler does not run under [RP.Require] or [RP.Optional] (or their
	// Tenants counterparts), or nobody is signed in.
	ErrNoUser = errors.New("oidcrp: no signed-in user in the context")
	// ErrNoTokens means that sessions keep no tokens: set Config.KeepTokens.
	ErrNoTokens = errors.New("oidcrp: sessions keep no tokens: set Config.KeepTokens")
	// ErrSessionEnded means that the session ended while the request was
	// served: the provider refused to refresh its tokens, or it was logged
	// out meanwhile. Its cookie is cleared on the response when the
	// response has not started.
	ErrSessionEnded = errors.New("oidcrp: the session has ended")
)

// UserTokenSource returns the access tokens of the signed-in user of a
// request that [RP.Require] or [RP.Optional] served, refreshed when they
// expire. It needs Config.KeepTokens ([ErrNoTokens] otherwise) and a
// signed-in user ([ErrNoUser]).
//
// A refresh is the middleware's: one per session at a time, shared with
// every concurrent request of the session and every goroutine of this one;
// a refresh the provider refuses, or a session logged out meanwhile, ends
// the session ([ErrSessionEnded]); a provider that cannot be asked gives an
// error wrapping [ErrUnavailable] and leaves the session as it is.
//
// Refreshed tokens are written back to the session: the server-side record
// with Config.SessionStore, and the session cookie through a Set-Cookie on
// the current response, which is possible only while the handler has not
// started it (no WriteHeader, Write or Flush yet). Tokens refreshed later
// are kept in this process's session cache only, so the next request of
// the session uses them here, but another replica, or this process after a
// restart, refreshes again with the refresh token of the old cookie, which
// a provider that rotates refresh tokens refuses, ending the session. So
// get the tokens, or make the calls, before writing the response, and not
// while another goroutine changes the response's headers.
//
// The source is valid for the request only. Its tokens carry no refresh
// token, and an expiry: wrapping it in [oauth2.ReuseTokenSource] is
// unnecessary (asking it is cheap) but harmless. A DPoP-bound token
// (Config.DPoP) has TokenType "DPoP" and is useless without a proof of the
// session's key, which only [UserClient] adds.
func UserTokenSource(ctx context.Context) (oauth2.TokenSource, error) {
	h, err := tokensFrom(ctx)
	if err != nil {
		return nil, err
	}
	return h, nil
}

// UserClient returns an HTTP client that sends requests as the signed-in
// user: each carries the access token from [UserTokenSource] in an
// "Authorization: Bearer" header or, for a DPoP-bound token (Config.DPoP),
// in an "Authorization: DPoP" header with a DPoP proof of the session's key
// that names the token (RFC 9449 §7); a resource server's nonce challenge
// (401 with use_dpop_nonce) is answered by sending the request once more,
// with its nonce, when the request's body can be sent again (GetBody, as
// http.NewRequest sets for in-memory bodies). The same conditions and
// errors apply: the token is refreshed when it expires, and the client is
// valid for the request only. It uses the transport and timeout of
// Config.HTTPClient (under [Tenants] without Base.HTTPClient, that is
// [PublicHTTPClient], which refuses internal addresses).
//
// It follows redirects within the origin of the request only: a redirect to
// another origin is returned as the response, so that the token never
// reaches a server it was not sent to. For another transport, wrap
// [UserTokenSource] in an [oauth2.Transport] (Bearer tokens only: it adds
// no DPoP proof).
func UserClient(ctx context.Context) (*http.Client, error) {
	h, err := tokensFrom(ctx)
	if err != nil {
		return nil, err
	}
	return h.rp.userClient(h), nil
}

func tokensFrom(ctx context.Context) (*userTokens, error) {
	if h, ok := ctx.Value(tokensKey{}).(*userTokens); ok {
		return h, nil
	}
	if _, ok := UserFromContext(ctx); ok {
		return nil, ErrNoTokens // the middleware adds the handle with KeepTokens only
	}
	return nil, ErrNoUser
}

type tokensKey struct{}

// userTokens is the per-request handle that the middleware puts in the
// context beside the user when Config.KeepTokens is set: the request's
// current session, and what writing a refreshed one back needs.
type userTokens struct {
	rp *RP
	w  *responseStart
	r  *http.Request

	mu  sync.Mutex
	u   *User // the session as last refreshed
	err error // the session ended: every later call fails
}

// withTokens returns the writer and context that next gets for a signed-in
// request with Config.KeepTokens. It is the single place where the handle
// is made.
func (rp *RP) withTokens(ctx context.Context, w http.ResponseWriter, r *http.Request, u *User) (http.ResponseWriter, context.Context) {
	rw := &responseStart{ResponseWriter: w}
	return rw, context.WithValue(ctx, tokensKey{}, &userTokens{rp: rp, w: rw, r: r, u: u})
}

// Token returns the session's access token, refreshed first when it is
// about to expire (as the middleware does).
func (h *userTokens) Token() (*oauth2.Token, error) {
	h.mu.Lock()
	defer h.mu.Unlock()
	if h.err != nil {
		return nil, h.err
	}
	rp, u, now := h.rp, h.u, h.rp.now()
	if rp.revocations.ended(u) {
		h.err = ErrSessionEnded
		return nil, h.err
	}
	if u.accessToken == "" {
		return nil, errors.New("oidcrp: the provider issued no access token")
	}
	if u.refreshToken == "" || u.accessExpiry.IsZero() || now.Before(u.accessExpiry.Add(-u.refreshSkew())) {
		if !u.accessExpiry.IsZero() && !now.Before(u.accessExpiry) {
			return nil, errors.New("oidcrp: the access token expired and the provider issued no refresh token")
		}
		return bearer(u), nil
	}
	if !rp.refreshable(u, now) {
		h.err = ErrSessionEnded
		return nil, h.err
	}
	// Another request of the session may have refreshed it since this one
	// started: its refresh token may already be spent.
	if cur := rp.currentSession(h.r); cur != nil && cur.sid == u.sid && cur.tokensAt.After(u.tokensAt) &&
		(cur.accessExpiry.IsZero() || now.Before(cur.accessExpiry.Add(-cur.refreshSkew()))) {
		h.u = cur
		return bearer(cur), nil
	}
	nu, err := rp.refreshSession(h.w, h.r, u)
	if err != nil {
		if errors.Is(err, ErrSessionEnded) {
			h.err = err
		}
		return nil, err
	}
	if h.w.started.Load() {
		rp.log.Debug("oidcrp: tokens refreshed after the response started: kept in this process only", "sub", u.Subject)
	}
	h.u = nu
	return bearer(nu), nil
}

func bearer(u *User) *oauth2.Token {
	typ := "Bearer"
	if u.tokenType != "" {
		typ = u.tokenType // "DPoP" for a DPoP-bound token (RFC 9449 §5)
	}
	return &oauth2.Token{AccessToken: u.accessToken, TokenType: typ, Expiry: u.accessExpiry}
}

// key returns the DPoP key of the session as last refreshed.
func (h *userTokens) key() *dpopKey {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.u.dpop
}

// currentSession reads the request's session as it is now, bypassing what
// this request already read: the cached user its cookie names (replaced
// when another request refreshed it), or the server-side record.
func (rp *RP) currentSession(r *http.Request) *User {
	if rp.cfg.SessionStore == nil {
		if value := cookieValue(r, rp.cfg.SessionName); value != "" {
			return rp.sessions.get(value, rp.now())
		}
		return nil
	}
	sess, err := rp.cfg.SessionStore.New(r, rp.cfg.SessionName) // not Get: the request's copy is the old one
	if err != nil || sess == nil || sess.IsNew {
		return nil
	}
	b, ok := sess.Values[sessionValueKey].([]byte)
	if !ok {
		return nil
	}
	u, err := decodeUser(b)
	if err != nil || u.Issuer != rp.cfg.Issuer {
		return nil
	}
	return rp.track(u)
}

// userClient makes the client of [UserClient]. Requests as the user are
// authorized here and only here (userTransport), so that a sender-
// constrained token can add its proof in the same place.
func (rp *RP) userClient(h *userTokens) *http.Client {
	base := rp.cfg.HTTPClient.Transport
	if base == nil {
		base = http.DefaultTransport
	}
	return &http.Client{
		Transport: userTransport{tokens: h, base: base, dpop: &dpopTransport{base: base, nonces: &rp.dpopNonces, now: rp.now}},
		Timeout:   rp.cfg.HTTPClient.Timeout,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if len(via) >= 10 {
				return errors.New("oidcrp: stopped after 10 redirects")
			}
			if req.URL.Scheme != via[0].URL.Scheme || req.URL.Host != via[0].URL.Host {
				return http.ErrUseLastResponse // never send the token to another origin
			}
			return nil
		},
	}
}

// userTransport authorizes requests with the user's access token: as a
// Bearer token, or a DPoP-bound one with a proof of the session's key
// (through dpop, a template whose key is set per request).
type userTransport struct {
	tokens *userTokens
	base   http.RoundTripper
	dpop   *dpopTransport
}

func (t userTransport) RoundTrip(req *http.Request) (*http.Response, error) {
	tok, err := t.tokens.Token()
	if err != nil {
		if req.Body != nil {
			req.Body.Close() // RoundTrip must close the body, even on errors
		}
		return nil, err
	}
	req = req.Clone(req.Context()) // RoundTrip must not modify the request
	if tok.Type() == "DPoP" {
		key := t.tokens.key()
		if key == nil {
			if req.Body != nil {
				req.Body.Close()
			}
			return nil, errNoDPoPKey
		}
		req.Header.Set("Authorization", "DPoP "+tok.AccessToken)
		dt := *t.dpop
		dt.key = key
		return dt.RoundTrip(req)
	}
	req.Header.Set("Authorization", "Bearer "+tok.AccessToken)
	return t.base.RoundTrip(req)
}

// responseStart is the response writer a handler gets with
// Config.KeepTokens: it notes when the response starts, after which a
// refreshed session cookie can no longer be set.
type responseStart struct {
	http.ResponseWriter
	started atomic.Bool
}

func (w *responseStart) WriteHeader(code int) {
	if code >= 200 || code == http.StatusSwitchingProtocols {
		w.started.Store(true)
	}
	w.ResponseWriter.WriteHeader(code)
}

func (w *responseStart) Write(b []byte) (int, error) {
	w.started.Store(true)
	return w.ResponseWriter.Write(b)
}

// ReadFrom keeps io.Copy to the response as efficient as without the
// wrapper.
func (w *responseStart) ReadFrom(r io.Reader) (int64, error) {
	w.started.Store(true)
	return io.Copy(w.ResponseWriter, r)
}

func (w *responseStart) Flush() {
	w.started.Store(true)
	_ = http.NewResponseController(w.ResponseWriter).Flush()
}

func (w *responseStart) Hijack() (net.Conn, *bufio.ReadWriter, error) {
	w.started.Store(true)
	return http.NewResponseController(w.ResponseWriter).Hijack()
}

// Unwrap lets http.ResponseController reach the server's writer.
func (w *responseStart) Unwrap() http.ResponseWriter { return w.ResponseWriter }
