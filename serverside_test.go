package oidcrp

import (
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/gorilla/sessions"
	"github.com/oidcrp/oidcrp/internal/devop"
)

// sessionCookie returns the browser's session cookie, whatever its name.
func (e *testEnv) sessionCookie() *http.Cookie { return e.cookie(e.rp.cfg.SessionName) }

// sessionFiles returns the records a gorilla FilesystemStore keeps in dir.
func sessionFiles(t *testing.T, dir string) []string {
	t.Helper()
	files, err := filepath.Glob(filepath.Join(dir, "session_*"))
	if err != nil {
		t.Fatal(err)
	}
	return files
}

// hookTransport runs onToken before a token request when armed.
type hookTransport struct {
	base    http.RoundTripper
	armed   atomic.Bool
	onToken func()
}

func (h *hookTransport) RoundTrip(r *http.Request) (*http.Response, error) {
	if r.URL.Path == "/token" && h.armed.CompareAndSwap(true, false) {
		h.onToken()
	}
	return h.base.RoundTrip(r)
}

// TestServerSideRefreshableSessionIsKept: KeepTokens with a gorilla
// FilesystemStore and no SessionLifetime. The record used to be saved with
// MaxAge 0, which FilesystemStore takes as "delete": the browser went back
// and forth between the application and the provider, one token request
// per round. The record must live as long as the session can.
func TestServerSideRefreshableSessionIsKept(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := sessions.NewFilesystemStore(dir, []byte("0123456789abcdef0123456789abcdef"))
	e := newEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute, AccessTokenLifetime: 5 * time.Minute},
		Config{KeepTokens: true, SessionStore: store})
	hops := e.follow(e.get(e.app.URL+"/", html))
	last := hops[len(hops)-1]
	if last.StatusCode != http.StatusOK {
		t.Fatalf("login ended with %d after %d hops; %d token requests", last.StatusCode, len(hops), e.op.Stats().Token)
	}
	if n := e.op.Stats().Token; n != 1 {
		t.Errorf("%d token requests for one login, want 1", n)
	}
	if files := sessionFiles(t, dir); len(files) != 1 {
		t.Fatalf("%d server-side records after login, want 1", len(files))
	}
	var set *http.Cookie
	for _, h := range hops {
		if c := setCookieNamed(h, e.rp.cfg.SessionName); c != nil {
			set = c
		}
	}
	if set == nil || set.MaxAge != 0 || !set.Expires.IsZero() {
		t.Errorf("the session cookie of a refreshable session should last the browser session: %+v", set)
	}
	// Refreshed past the first access token and the first ID token.
	for range 3 {
		e.clock.Advance(5 * time.Minute)
		if status, out, _ := e.apiGet("/api"); status != http.StatusOK || out["sub"] != "demo-user" {
			t.Fatalf("after %v: %d %v", 5*time.Minute, status, out)
		}
	}
	if files := sessionFiles(t, dir); len(files) != 1 {
		t.Errorf("%d server-side records after refreshes, want 1", len(files))
	}
	// Logout deletes the record, and the old cookie no longer works.
	old := e.sessionCookie()
	e.postLogout()
	if files := sessionFiles(t, dir); len(files) != 0 {
		t.Errorf("%d server-side records after logout, want 0", len(files))
	}
	if status := e.replay("/api", old); status != http.StatusUnauthorized {
		t.Errorf("session replayed after logout: %d", status)
	}
}

// TestServerSideRecordLifetime: the record is saved for as long as the
// session may last: until the ID token's expiry, SessionLifetime, or
// maxRefreshable after login for a refreshable session.
func TestServerSideRecordLifetime(t *testing.T) {
	t.Parallel()
	for name, tc := range map[string]struct {
		cfg  Config
		want time.Duration
	}{
		"ID token":         {Config{}, 10 * time.Minute},
		"SessionLifetime":  {Config{KeepTokens: true, SessionLifetime: time.Hour}, time.Hour},
		"refreshable":      {Config{KeepTokens: true}, maxRefreshable},
		"lifetime, no tok": {Config{SessionLifetime: 2 * time.Hour}, 2 * time.Hour},
	} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			store := &recordingStore{Store: sessions.NewFilesystemStore(t.TempDir(), []byte("0123456789abcdef0123456789abcdef"))}
			tc.cfg.SessionStore = store
			e := newEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute}, tc.cfg)
			e.login("/")
			got := time.Duration(store.lastMaxAge.Load()) * time.Second
			if got < tc.want-time.Minute || got > tc.want {
				t.Errorf("record saved with MaxAge %v, want %v", got, tc.want)
			}
		})
	}
}

// recordingStore notes the MaxAge of the last record saved.
type recordingStore struct {
	sessions.Store
	lastMaxAge atomic.Int64
}

// New returns the inner store's session, saved through s.
func (s *recordingStore) New(r *http.Request, name string) (*sessions.Session, error) {
	in, err := s.Store.New(r, name)
	out := sessions.NewSession(s, name)
	out.ID, out.Values, out.Options, out.IsNew = in.ID, in.Values, in.Options, in.IsNew
	return out, err
}

func (s *recordingStore) Get(r *http.Request, name string) (*sessions.Session, error) {
	return sessions.GetRegistry(r).Get(s, name)
}

func (s *recordingStore) Save(r *http.Request, w http.ResponseWriter, sess *sessions.Session) error {
	s.lastMaxAge.Store(int64(sess.Options.MaxAge))
	return s.Store.Save(r, w, sess)
}

// TestRefreshDoesNotResurrectDeletedRecord: a server-side record deleted
// while its refresh was in flight (a logout at a replica, an administrator,
// the store's own expiry) stays deleted, and the session is over.
func TestRefreshDoesNotResurrectDeletedRecord(t *testing.T) {
	t.Parallel()
	dir := t.TempDir()
	store := sessions.NewFilesystemStore(dir, []byte("0123456789abcdef0123456789abcdef"))
	cfg := Config{KeepTokens: true, SessionStore: store}
	e := newEnv(t, devop.Options{IDTokenLifetime: 10 * time.Minute, AccessTokenLifetime: 5 * time.Minute}, cfg)
	hook := &hookTransport{base: e.opSrv.Client().Transport, onToken: func() {
		for _, f := range sessionFiles(t, dir) {
			os.Remove(f)
		}
	}}
	cfg.HTTPClient = &http.Client{Transport: hook}
	e.rp = e.newRP(cfg)
	e.app.Config.Handler = e.handler(e.rp)
	if out := e.login("/"); out["sub"] != "demo-user" {
		t.Fatalf("login: %v", out)
	}
	if files := sessionFiles(t, dir); len(files) != 1 {
		t.Fatalf("%d records after login, want 1", len(files))
	}
	e.clock.Advance(5 * time.Minute)
	hook.armed.Store(true) // the record goes while the refresh is in flight
	status, _, _ := e.apiGet("/api")
	if hook.armed.Load() {
		t.Fatal("no refresh happened")
	}
	if status != http.StatusUnauthorized {
		t.Errorf("request whose session record was deleted during its refresh: %d, want 401", status)
	}
	if files := sessionFiles(t, dir); len(files) != 0 {
		t.Errorf("the refresh wrote the deleted record back: %v", files)
	}
	if status, _, _ := e.apiGet("/api"); status != http.StatusUnauthorized {
		t.Errorf("next request: %d, want 401", status)
	}
	if !strings.Contains(e.logs.String(), "ended meanwhile") {
		t.Errorf("the log does not say why the session ended:\n%s", e.logs)
	}
}
