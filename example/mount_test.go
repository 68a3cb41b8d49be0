package main

import (
	"bytes"
	"encoding/json"
	"errors"
	"io"
	"log/slog"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"

	"github.com/go-chi/chi/v5"
	"github.com/gorilla/mux"
	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/internal/devop"
)

// lockedBuffer collects log records from concurrent handlers.
type lockedBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (l *lockedBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.Write(p)
}

func (l *lockedBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.b.String()
}

// mountEnv is a development provider that signs in without a page, an
// application server whose router the test sets, and a browser that
// follows redirects and counts those to the authorization endpoint.
type mountEnv struct {
	t          *testing.T
	op         *devop.Provider
	opSrv      *httptest.Server
	app        *httptest.Server
	browser    *http.Client
	logs       *lockedBuffer
	toProvider int // CheckRedirect runs on the caller's goroutine
}

func newMountEnv(t *testing.T) *mountEnv {
	m := &mountEnv{t: t, logs: &lockedBuffer{}}
	m.op = devop.New(devop.Options{AutoLogin: true})
	m.opSrv = httptest.NewTLSServer(m.op)
	t.Cleanup(m.opSrv.Close)
	m.op.SetIssuer(m.opSrv.URL)
	m.app = httptest.NewTLSServer(http.NotFoundHandler())
	t.Cleanup(m.app.Close)
	jar, _ := cookiejar.New(nil)
	authorize := m.op.Issuer() + "/authorize"
	m.browser = &http.Client{
		Jar:       jar,
		Transport: m.opSrv.Client().Transport,
		CheckRedirect: func(req *http.Request, via []*http.Request) error {
			if strings.HasPrefix(req.URL.String(), authorize) {
				m.toProvider++
			}
			if len(via) > 30 {
				return errors.New("redirect loop")
			}
			req.Header.Set("Accept", "text/html")
			return nil
		},
	}
	return m
}

// newRP returns a relying party of the provider with the callback at
// callbackPath on the application server.
func (m *mountEnv) newRP(callbackPath, logoutPath string) *oidcrp.RP {
	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:      m.op.Issuer(),
		RedirectURL: m.app.URL + callbackPath,
		LogoutPath:  logoutPath,
		HTTPClient:  m.opSrv.Client(),
		Logger:      slog.New(slog.NewTextHandler(m.logs, nil)),
	})
	if err != nil {
		m.t.Fatal(err)
	}
	return rp
}

func (m *mountEnv) do(req *http.Request) (*http.Response, string) {
	m.t.Helper()
	req.Header.Set("Accept", "text/html")
	resp, err := m.browser.Do(req)
	if err != nil {
		m.t.Fatalf("%s %s: %v (%d redirects to the provider)\nlogs:\n%s", req.Method, req.URL, err, m.toProvider, m.logs)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	return resp, string(body)
}

// signIn navigates to path and checks that the browser ends there signed
// in, after exactly one trip to the provider.
func (m *mountEnv) signIn(path string) {
	m.t.Helper()
	m.toProvider = 0
	req, _ := http.NewRequest(http.MethodGet, m.app.URL+path, nil)
	resp, body := m.do(req)
	var got struct{ Sub string }
	if resp.StatusCode != http.StatusOK || json.Unmarshal([]byte(body), &got) != nil || got.Sub != "demo-user" {
		m.t.Fatalf("sign-in at %s ended at %s with %d: %s\nlogs:\n%s", path, resp.Request.URL, resp.StatusCode, body, m.logs)
	}
	if resp.Request.URL.RequestURI() != path {
		m.t.Errorf("sign-in at %s ended at %s", path, resp.Request.URL.RequestURI())
	}
	if m.toProvider != 1 {
		m.t.Errorf("%d redirects to the authorization endpoint, want 1", m.toProvider)
	}
	if strings.Contains(m.logs.String(), "arrived at") {
		m.t.Errorf("the callback was reported misrouted:\n%s", m.logs)
	}
}

// signOut posts to logoutPath and checks that the browser ends signed out
// there and that path no longer lets it in.
func (m *mountEnv) signOut(logoutPath, protected string) {
	m.t.Helper()
	req, _ := http.NewRequest(http.MethodPost, m.app.URL+logoutPath, nil)
	req.Header.Set("Origin", m.app.URL)
	resp, body := m.do(req)
	if resp.StatusCode != http.StatusOK || resp.Request.URL.Path != logoutPath || !strings.Contains(body, "signed out") {
		m.t.Fatalf("sign-out ended at %s with %d: %s", resp.Request.URL, resp.StatusCode, body)
	}
	if strings.Contains(m.logs.String(), "unknown state") {
		m.t.Errorf("the post-logout state was not recognised:\n%s", m.logs)
	}
	api, _ := http.NewRequest(http.MethodGet, m.app.URL+protected, nil)
	resp, err := m.browser.Do(api)
	if err != nil {
		m.t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusUnauthorized {
		m.t.Errorf("after sign-out %s answered %d, want 401", protected, resp.StatusCode)
	}
}

func whoami(w http.ResponseWriter, r *http.Request) {
	u, _ := oidcrp.UserFromContext(r.Context())
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]string{"sub": u.Subject})
}

// chi sub-router under /app with the middleware on it: the middleware
// answers the callback and logout paths, which have no route.
func TestMountChiMiddleware(t *testing.T) {
	m := newMountEnv(t)
	rp := m.newRP("/app/auth/callback", "/app/logout")
	r := chi.NewRouter()
	r.Route("/app", func(r chi.Router) {
		r.Use(rp.Require)
		r.Get("/page", whoami)
	})
	m.app.Config.Handler = r
	m.signIn("/app/page?x=1")
	m.signOut("/app/logout", "/app/page")
}

// chi with a route for each of the RP's handlers.
func TestMountChiRoutes(t *testing.T) {
	m := newMountEnv(t)
	rp := m.newRP("/auth/callback", "/logout")
	r := chi.NewRouter()
	r.Method(http.MethodGet, "/auth/callback", rp.CallbackHandler())
	r.Handle("/logout", rp.LogoutHandler())
	r.Method(http.MethodGet, "/login", rp.LoginHandler())
	r.With(rp.Require).Get("/me", whoami)
	m.app.Config.Handler = r
	m.signIn("/me")
	m.signOut("/logout", "/me")
	m.op.EndSessions()
	m.toProvider = 0
	req, _ := http.NewRequest(http.MethodGet, m.app.URL+"/login?return_to=/me", nil)
	if resp, _ := m.do(req); resp.StatusCode != http.StatusOK || resp.Request.URL.Path != "/me" || m.toProvider != 1 {
		t.Fatalf("LoginHandler: %d at %s after %d trips to the provider", resp.StatusCode, resp.Request.URL, m.toProvider)
	}
}

// gorilla/mux sub-router under /app. Its middleware runs only for matched
// routes, so the callback and logout paths are routed to the RP's handlers.
func TestMountGorillaMux(t *testing.T) {
	m := newMountEnv(t)
	rp := m.newRP("/app/auth/callback", "/app/logout")
	r := mux.NewRouter()
	app := r.PathPrefix("/app").Subrouter()
	app.Handle("/auth/callback", rp.CallbackHandler()).Methods(http.MethodGet)
	app.Handle("/logout", rp.LogoutHandler()).Methods(http.MethodGet, http.MethodPost)
	pages := app.NewRoute().Subrouter()
	pages.Use(rp.Require)
	pages.HandleFunc("/page", whoami)
	m.app.Config.Handler = r
	m.signIn("/app/page?x=1")
	m.signOut("/app/logout", "/app/page")
}
