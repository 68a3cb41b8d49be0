// Command example is a small web application protected by oidcrp.
//
// With no flags it starts an embedded development provider on a loopback
// port (not for production) and the application on 127.0.0.1:8080:
//
//	go run ./example
//
// Against a real provider that supports dynamic registration:
//
//	go run ./example -issuer https://login.example.com -public-url https://app.example.com -store file:/var/lib/app/oidc.json
//
// As a multi-tenant application, path-routed (/t/acme/, /t/globex/), each
// tenant with its own embedded development provider:
//
//	go run ./example -tenants acme,globex
package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"html/template"
	"io"
	"log/slog"
	"net/http"
	"os"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/internal/devop"
	"github.com/oidcrp/oidcrp/redisstore"
	"github.com/redis/go-redis/v9"
)

func main() {
	if err := run(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "example:", err)
		os.Exit(1)
	}
}

func env(name, def string) string {
	if v := os.Getenv(name); v != "" {
		return v
	}
	return def
}

func run(args []string) error {
	fs := flag.NewFlagSet("example", flag.ContinueOnError)
	issuer := fs.String("issuer", env("OIDC_ISSUER", ""), "OpenID Provider issuer URL; empty starts the embedded development provider (env OIDC_ISSUER)")
	addr := fs.String("addr", env("ADDR", "127.0.0.1:8080"), "listen address (env ADDR)")
	store := fs.String("store", env("CREDENTIAL_STORE", "memory"), "credential store: memory, file:PATH or redis://HOST:PORT/DB (env CREDENTIAL_STORE)")
	iat := fs.String("initial-access-token", env("OIDC_INITIAL_ACCESS_TOKEN", ""), "initial access token for registration (env OIDC_INITIAL_ACCESS_TOKEN)")
	publicURL := fs.String("public-url", env("PUBLIC_URL", ""), "URL the browser uses to reach this app; default http://ADDR (env PUBLIC_URL)")
	authMethod := fs.String("auth-method", env("OIDC_AUTH_METHOD", ""), "token endpoint authentication to register: private_key_jwt, client_secret_basic, client_secret_post, client_secret_jwt or none; empty picks the best the provider supports, private_key_jwt first (env OIDC_AUTH_METHOD)")
	tenantIDs := fs.String("tenants", env("TENANTS", ""), "comma-separated tenant IDs: serve path-routed tenants at /t/ID/, each with its own embedded development provider unless -issuer is set (env TENANTS)")
	if err := fs.Parse(args); err != nil {
		return err
	}
	log := slog.New(slog.NewTextHandler(os.Stderr, nil))
	if *publicURL == "" {
		*publicURL = "http://" + *addr
	}
	*publicURL = strings.TrimSuffix(*publicURL, "/")

	cs, err := credentialStore(*store, log)
	if err != nil {
		return err
	}
	base := oidcrp.Config{
		Store:              cs,
		InitialAccessToken: oidcrp.Secret(*iat),
		Logger:             log,
		KeepTokens:         true, // for /api-demo: call APIs as the user
		Metadata:           oidcrp.ClientMetadata{TokenEndpointAuthMethod: *authMethod},
	}
	// startProvider returns the issuer to use: -issuer, or a new embedded
	// development provider.
	startProvider := func() (string, error) {
		if *issuer != "" {
			return *issuer, nil
		}
		op, stop, err := devop.Start("127.0.0.1:0", "", devop.Options{InitialAccessToken: *iat, AuthMethods: devop.AllAuthMethods})
		if err != nil {
			return "", fmt.Errorf("start development provider: %w", err)
		}
		stops = append(stops, stop)
		log.Warn("started an embedded DEVELOPMENT provider (not for production)", "issuer", op.Issuer())
		return op.Issuer(), nil
	}
	defer func() {
		for _, stop := range stops {
			stop()
		}
	}()

	var mux *http.ServeMux
	if *tenantIDs != "" {
		mux, err = tenantsApp(strings.Split(*tenantIDs, ","), startProvider, *publicURL, *issuer == "", base)
	} else {
		mux, err = singleApp(startProvider, *publicURL, base)
	}
	if err != nil {
		return err
	}

	srv := &http.Server{Addr: *addr, Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	ctx, cancel := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer cancel()
	go func() {
		<-ctx.Done()
		shutdown, done := context.WithTimeout(context.Background(), 5*time.Second)
		defer done()
		_ = srv.Shutdown(shutdown)
	}()
	if *tenantIDs != "" {
		for _, id := range strings.Split(*tenantIDs, ",") {
			fmt.Printf("open %s/t/%s/ in a browser\n", *publicURL, id)
		}
	} else {
		fmt.Printf("open %s/ in a browser\n", *publicURL)
	}
	if err := srv.ListenAndServe(); !errors.Is(err, http.ErrServerClosed) {
		return err
	}
	return nil
}

var stops []func()

// singleApp protects the application with one relying party.
func singleApp(startProvider func() (string, error), publicURL string, cfg oidcrp.Config) (*http.ServeMux, error) {
	issuer, err := startProvider()
	if err != nil {
		return nil, err
	}
	cfg.Issuer, cfg.RedirectURL = issuer, publicURL+"/auth/callback"
	rp, err := oidcrp.New(cfg)
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /{$}", rp.Require(http.HandlerFunc(home)))
	mux.Handle("GET /me", rp.Require(http.HandlerFunc(me)))
	mux.Handle("GET /api-demo", rp.Require(http.HandlerFunc(apiDemo)))
	mux.Handle("/logout", rp)
	mux.Handle("/auth/callback", rp)
	return mux, nil
}

// tenantsApp serves path-routed tenants /t/ID/…, each with its own provider
// and client registration.
func tenantsApp(ids []string, startProvider func() (string, error), publicURL string, devProviders bool, base oidcrp.Config) (*http.ServeMux, error) {
	issuers := map[string]string{}
	for _, id := range ids {
		iss, err := startProvider()
		if err != nil {
			return nil, err
		}
		issuers[id] = iss
	}
	tenants, err := oidcrp.NewTenants(oidcrp.TenantsConfig{
		Resolve: func(r *http.Request) (oidcrp.Tenant, error) {
			id := r.PathValue("tenant")
			iss, ok := issuers[id]
			if !ok {
				return oidcrp.Tenant{}, fmt.Errorf("unknown tenant %q", id)
			}
			return oidcrp.Tenant{
				ID: id, Issuer: iss, RedirectURL: publicURL + "/t/" + id + "/auth/callback", LogoutPath: "/t/" + id + "/logout",
			}, nil
		},
		AllowIssuer: func(iss string) bool {
			for _, known := range issuers {
				if iss == known {
					return true
				}
			}
			return false
		},
		AllowPrivateNetworks: devProviders, // the embedded providers listen on loopback
		Base:                 base,
	})
	if err != nil {
		return nil, err
	}
	mux := http.NewServeMux()
	mux.Handle("GET /t/{tenant}/{$}", tenants.Require(http.HandlerFunc(home)))
	mux.Handle("GET /t/{tenant}/me", tenants.Require(http.HandlerFunc(me)))
	mux.Handle("GET /t/{tenant}/api-demo", tenants.Require(http.HandlerFunc(apiDemo)))
	mux.Handle("/t/{tenant}/logout", tenants)
	mux.Handle("/t/{tenant}/auth/callback", tenants)
	return mux, nil
}

func credentialStore(spec string, log *slog.Logger) (oidcrp.CredentialStore, error) {
	switch {
	case spec == "memory":
		return new(oidcrp.MemoryStore), nil
	case strings.HasPrefix(spec, "file:") && len(spec) > len("file:"):
		return oidcrp.NewFileStore(strings.TrimPrefix(spec, "file:")), nil
	case strings.HasPrefix(spec, "redis://") || strings.HasPrefix(spec, "rediss://"):
		opts, err := redis.ParseURL(spec)
		if err != nil {
			return nil, fmt.Errorf("-store %q: %w", spec, err)
		}
		// Logger: go-redis's own lines (failed dials…) in the app's log format.
		return redisstore.New(redis.NewClient(opts), redisstore.Options{Logger: log}), nil
	}
	return nil, fmt.Errorf("unknown -store %q: use memory, file:PATH or redis://HOST:PORT/DB", spec)
}

var homePage = template.Must(template.New("home").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>oidcrp example</title></head>
<body><h1>Hello, {{.Name}}</h1>
<p>Subject <code>{{.Sub}}</code> at <code>{{.Iss}}</code>.</p>
<p><a href="me">Your claims as JSON</a></p>
<p><a href="api-demo">Call the provider's userinfo API as you</a> (with your access token, refreshed as needed)</p>
<form method="post" action="{{.Logout}}"><button type="submit">Sign out</button></form>
</body></html>
`))

func home(w http.ResponseWriter, r *http.Request) {
	u, _ := oidcrp.UserFromContext(r.Context())
	var c struct {
		Name  string `json:"name"`
		Email string `json:"email"`
	}
	_ = u.Claims(&c)
	name := c.Name
	if name == "" {
		name = u.Subject
	}
	w.Header().Set("Content-Type", "text/html; charset=utf-8")
	logout := "/logout"
	if t := r.PathValue("tenant"); t != "" {
		logout = "/t/" + t + "/logout"
	}
	_ = homePage.Execute(w, map[string]string{"Name": name, "Sub": u.Subject, "Iss": u.Issuer, "Logout": logout})
}

func me(w http.ResponseWriter, r *http.Request) {
	u, _ := oidcrp.UserFromContext(r.Context())
	claims := map[string]any{}
	_ = u.Claims(&claims)
	w.Header().Set("Content-Type", "application/json")
	_ = json.NewEncoder(w).Encode(map[string]any{"sub": u.Subject, "iss": u.Issuer, "claims": claims})
}

// apiDemo calls the provider's userinfo endpoint as the signed-in user,
// through the user's client: the access token is attached, and refreshed
// first when it has expired (the refreshed session is written back, since
// the response has not started yet).
func apiDemo(w http.ResponseWriter, r *http.Request) {
	u, _ := oidcrp.UserFromContext(r.Context())
	answer := func(status int, v map[string]any) {
		w.Header().Set("Content-Type", "application/json")
		w.WriteHeader(status)
		_ = json.NewEncoder(w).Encode(v)
	}
	endpoint, err := userinfoEndpoint(r.Context(), u.Issuer)
	if err != nil {
		answer(http.StatusBadGateway, map[string]any{"error": err.Error()})
		return
	}
	hc, err := oidcrp.UserClient(r.Context())
	if err != nil {
		answer(http.StatusInternalServerError, map[string]any{"error": err.Error()})
		return
	}
	req, _ := http.NewRequestWithContext(r.Context(), http.MethodGet, endpoint, nil)
	resp, err := hc.Do(req)
	if err != nil {
		// errors.Is(err, oidcrp.ErrSessionEnded): the provider refused to
		// refresh the tokens; the next navigation signs in again.
		answer(http.StatusBadGateway, map[string]any{"error": err.Error(), "session_ended": errors.Is(err, oidcrp.ErrSessionEnded)})
		return
	}
	defer resp.Body.Close()
	var claims map[string]any
	_ = json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&claims)
	answer(http.StatusOK, map[string]any{"userinfo_endpoint": endpoint, "status": resp.StatusCode, "userinfo": claims})
}

var (
	endpointsMu sync.Mutex
	endpoints   = map[string]string{} // issuer → userinfo endpoint
)

// userinfoEndpoint reads the userinfo endpoint from the issuer's discovery
// document, once per issuer.
func userinfoEndpoint(ctx context.Context, issuer string) (string, error) {
	endpointsMu.Lock()
	ep, ok := endpoints[issuer]
	endpointsMu.Unlock()
	if ok {
		return ep, nil
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, strings.TrimSuffix(issuer, "/")+"/.well-known/openid-configuration", nil)
	if err != nil {
		return "", err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return "", fmt.Errorf("discovery: %w", err)
	}
	defer resp.Body.Close()
	var doc struct {
		UserinfoEndpoint string `json:"userinfo_endpoint"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, 1<<20)).Decode(&doc); err != nil || doc.UserinfoEndpoint == "" {
		return "", fmt.Errorf("discovery: no userinfo_endpoint (HTTP %d)", resp.StatusCode)
	}
	endpointsMu.Lock()
	endpoints[issuer] = doc.UserinfoEndpoint
	endpointsMu.Unlock()
	return doc.UserinfoEndpoint, nil
}
