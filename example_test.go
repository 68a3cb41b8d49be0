package oidcrp_test

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log"
	"net/http"
	"time"

	"github.com/gorilla/sessions"
	"github.com/oidcrp/oidcrp"
)

// Protect a whole application. Discovery and registration happen on the
// first request; the credentials are kept in a file so restarts reuse them.
func Example() {
	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:      "https://login.example.com",
		RedirectURL: "https://app.example.com/auth/callback",
		Store:       oidcrp.NewFileStore("/var/lib/app/oidc.json"),
	})
	if err != nil {
		log.Fatal(err)
	}
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcrp.UserFromContext(r.Context()) // always present under Require
		fmt.Fprintln(w, "hello", u.Subject)
	})
	log.Fatal(http.ListenAndServe(":8080", rp.Require(app)))
}

// Read claims of the signed-in user into your own type.
func ExampleUser_Claims() {
	handler := func(w http.ResponseWriter, r *http.Request) {
		u, ok := oidcrp.UserFromContext(r.Context())
		if !ok {
			http.Error(w, "not signed in", http.StatusUnauthorized)
			return
		}
		var c struct {
			Email  string   `json:"email"`
			Groups []string `json:"groups"`
		}
		if err := u.Claims(&c); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, c.Email, c.Groups)
	}
	_ = handler
}

// Protect only part of an application: the RP itself answers its callback
// and logout paths wherever they are mounted.
func ExampleRP_Optional() {
	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:      "https://login.example.com",
		RedirectURL: "https://app.example.com/auth/callback",
		LogoutPath:  "/auth/logout",
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("/auth/", rp)
	mux.Handle("/admin/", rp.Require(http.NotFoundHandler()))
	mux.Handle("/", rp.Optional(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if u, ok := oidcrp.UserFromContext(r.Context()); ok {
			fmt.Fprintln(w, "welcome back", u.Subject)
			return
		}
		fmt.Fprintln(w, `<a href="/admin/">sign in</a>`)
	})))
	log.Fatal(http.ListenAndServe(":8080", mux))
}

// Warm up at start and use Ready as a readiness probe.
func ExampleRP_Ready() {
	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:      "https://login.example.com",
		RedirectURL: "https://app.example.com/auth/callback",
	})
	if err != nil {
		log.Fatal(err)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	if err := rp.Ready(ctx); err != nil {
		log.Printf("not ready yet (requests will retry): %v", err)
	}
	http.HandleFunc("/readyz", func(w http.ResponseWriter, r *http.Request) {
		if err := rp.Ready(r.Context()); err != nil {
			http.Error(w, err.Error(), http.StatusServiceUnavailable)
		}
	})
}

// Keep sessions server-side, in any gorilla sessions.Store, when claims do
// not fit a cookie or sessions must end everywhere at logout.
func ExampleConfig_sessionStore() {
	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:       "https://login.example.com",
		RedirectURL:  "https://app.example.com/auth/callback",
		SessionStore: sessions.NewFilesystemStore("/var/lib/app/sessions", []byte("32-byte-long-authentication-key!")),
	})
	if err != nil {
		log.Fatal(err)
	}
	_ = rp
}

// Route each of the RP's paths yourself, here with Go 1.22 ServeMux
// patterns; chi and gorilla/mux routes work the same way. The callback must
// be routed where requests for RedirectURL arrive, the logout handler where
// those for LogoutPath (and PostLogoutRedirectURL) arrive.
func ExampleRP_CallbackHandler() {
	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:      "https://login.example.com",
		RedirectURL: "https://app.example.com/auth/callback",
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /auth/callback", rp.CallbackHandler())
	mux.Handle("/logout", rp.LogoutHandler()) // GET shows a button, POST signs out
	mux.Handle("GET /login", rp.LoginHandler())
	mux.Handle("GET /me", rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcrp.UserFromContext(r.Context())
		fmt.Fprintln(w, u.Subject)
	})))
	log.Fatal(http.ListenAndServe(":8080", mux))
}

// Behind a reverse proxy that serves the application at
// https://example.com/app/ and forwards /app/X as /X, RedirectURL and
// LogoutPath are the browser's URLs, and the handlers are mounted at the
// paths the application receives. After a login the browser returns under
// /app/, the prefix the proxy removed from the callback.
func ExampleRP_LogoutHandler() {
	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:      "https://login.example.com",
		RedirectURL: "https://example.com/app/auth/callback",
		LogoutPath:  "/app/logout",
	})
	if err != nil {
		log.Fatal(err)
	}
	mux := http.NewServeMux()
	mux.Handle("GET /auth/callback", rp.CallbackHandler())
	mux.Handle("/logout", rp.LogoutHandler())
	mux.Handle("/", rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcrp.UserFromContext(r.Context())
		fmt.Fprintln(w, "hello", u.Subject)
	})))
	log.Fatal(http.ListenAndServe(":8080", mux))
}

// Serve the application under a path prefix with http.StripPrefix. The
// middleware recognises its own paths by the path the server received,
// which StripPrefix keeps, so RedirectURL and LogoutPath are the browser's.
func ExampleRP_Require_stripPrefix() {
	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:      "https://login.example.com",
		RedirectURL: "https://app.example.com/app/auth/callback",
		LogoutPath:  "/app/logout",
	})
	if err != nil {
		log.Fatal(err)
	}
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcrp.UserFromContext(r.Context())
		fmt.Fprintln(w, "hello", u.Subject, "at", r.URL.Path) // /app/page arrives as /page
	})
	mux := http.NewServeMux()
	mux.Handle("/app/", http.StripPrefix("/app", rp.Require(app)))
	log.Fatal(http.ListenAndServe(":8080", mux))
}

// One relying party per customer, each with its own identity provider. The
// redirect URL comes from configuration, never from the request's Host
// header, which the client controls.
func ExampleNewTenants() {
	type customer struct{ issuer, baseURL string }
	customers := map[string]customer{
		"acme":   {"https://login.acme.example", "https://acme.app.example"},
		"globex": {"https://sso.globex.example", "https://globex.app.example"},
	}
	tenants, err := oidcrp.NewTenants(oidcrp.TenantsConfig{
		Resolve: func(r *http.Request) (oidcrp.Tenant, error) {
			for id, c := range customers {
				if "https://"+r.Host == c.baseURL {
					return oidcrp.Tenant{ID: id, Issuer: c.issuer, RedirectURL: c.baseURL + "/auth/callback"}, nil
				}
			}
			return oidcrp.Tenant{}, fmt.Errorf("unknown host %q", r.Host)
		},
		AllowIssuer: func(issuer string) bool {
			for _, c := range customers {
				if c.issuer == issuer {
					return true
				}
			}
			return false
		},
		Base: oidcrp.Config{Store: oidcrp.NewFileStore("/var/lib/app/oidc.json")},
	})
	if err != nil {
		log.Fatal(err)
	}
	app := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcrp.UserFromContext(r.Context())
		fmt.Fprintln(w, "hello", u.Subject, "of", u.Issuer)
	})
	log.Fatal(http.ListenAndServe(":8080", tenants.Require(app)))
}

// Offboarding: end every session of a user in every replica that shares
// the store, and sign one session out without leaving the page.
func ExampleRP_EndSessions() {
	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:      "https://login.example.com",
		RedirectURL: "https://app.example.com/auth/callback",
		Store:       oidcrp.NewFileStore("/var/lib/app/oidc.json"),
	})
	if err != nil {
		log.Fatal(err)
	}
	offboard := func(ctx context.Context, subject string) error {
		return rp.EndSessions(ctx, subject) // their next request is not signed in
	}
	_ = offboard
	http.Handle("POST /admin/end-my-session", rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		u, _ := oidcrp.UserFromContext(r.Context())
		if err := rp.EndSession(r.Context(), u); err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		fmt.Fprintln(w, "this session has ended")
	})))
}

// Call an API as the signed-in user: the client sends the user's access
// token and refreshes it when it expires, writing the refreshed session
// back. Make the calls before writing the response, so that the refreshed
// session cookie can still be set.
func ExampleUserClient() {
	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:      "https://login.example.com",
		RedirectURL: "https://app.example.com/auth/callback",
		KeepTokens:  true, // required
	})
	if err != nil {
		log.Fatal(err)
	}
	http.Handle("GET /orders", rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		hc, err := oidcrp.UserClient(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		resp, err := hc.Get("https://api.example.com/orders")
		if errors.Is(err, oidcrp.ErrSessionEnded) {
			http.Error(w, "please sign in again", http.StatusUnauthorized) // the provider refused a refresh
			return
		} else if err != nil {
			http.Error(w, err.Error(), http.StatusBadGateway)
			return
		}
		defer resp.Body.Close()
		w.Header().Set("Content-Type", resp.Header.Get("Content-Type"))
		_, _ = io.Copy(w, resp.Body)
	})))
}

// The user's tokens as an oauth2.TokenSource, for SDKs that take one.
func ExampleUserTokenSource() {
	handler := func(w http.ResponseWriter, r *http.Request) {
		ts, err := oidcrp.UserTokenSource(r.Context())
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		tok, err := ts.Token() // refreshed when about to expire
		if err != nil {
			http.Error(w, err.Error(), http.StatusUnauthorized)
			return
		}
		fmt.Fprintln(w, "token expires at", tok.Expiry)
	}
	_ = handler
}
