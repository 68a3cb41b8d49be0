package oidcrp

import (
	"bytes"
	"fmt"
	"log/slog"
	"net/http"
	"strings"
	"testing"
)

// TestSecretsRedactedEverywhere prints every value that holds a secret with
// every fmt verb and both slog handlers: none may show it.
func TestSecretsRedactedEverywhere(t *testing.T) {
	t.Parallel()
	const secret, token, iat, key = "s3cr3t-value", "rat-value", "iat-value", "k3y-value-0123456789abcdef0123456789"
	creds := credentials{ClientID: "id", ClientSecret: secret, RegistrationAccessToken: token}
	cfg := Config{
		Issuer: "https://op.example", RedirectURL: "https://app.example/cb",
		ClientSecret: secret, InitialAccessToken: iat, SessionKeys: []Secret{key},
	}
	rp, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	tenants, err := NewTenants(TenantsConfig{
		Resolve:     func(*http.Request) (Tenant, error) { return Tenant{}, nil },
		AllowIssuer: func(string) bool { return true },
		Base:        cfg,
	})
	if err != nil {
		t.Fatal(err)
	}
	values := map[string]any{"credentials": creds, "*credentials": &creds, "Config": cfg, "*Config": &cfg, "RP": rp, "Tenants": tenants,
		"Secret": Secret(secret)}
	for name, v := range values {
		var outs []string
		for _, verb := range []string{"%v", "%+v", "%#v", "%s", "%q", "%x", "%X", "%d"} {
			outs = append(outs, verb+" "+fmt.Sprintf(verb, v))
		}
		for _, h := range []func(*bytes.Buffer) slog.Handler{
			func(b *bytes.Buffer) slog.Handler { return slog.NewTextHandler(b, nil) },
			func(b *bytes.Buffer) slog.Handler { return slog.NewJSONHandler(b, nil) },
		} {
			var buf bytes.Buffer
			slog.New(h(&buf)).Info("x", "v", v)
			outs = append(outs, "slog "+buf.String())
		}
		for _, out := range outs {
			for _, s := range []string{secret, token, iat, key} {
				for _, form := range []string{s, fmt.Sprintf("%x", s), fmt.Sprintf("%X", s), fmt.Sprint([]byte(s))} {
					if strings.Contains(out, form) {
						t.Errorf("%s: %q shown: %s", name, s, out)
					}
				}
			}
		}
	}
}

// TestSecretFormsRedacted pins the redacted forms.
func TestSecretFormsRedacted(t *testing.T) {
	t.Parallel()
	for format, want := range map[string]string{"%v": "[redacted]", "%s": "[redacted]", "%q": `"[redacted]"`, "%#v": `"[redacted]"`, "%d": "[redacted]"} {
		if got := fmt.Sprintf(format, Secret("x")); got != want {
			t.Errorf("%s: %q, want %q", format, got, want)
		}
	}
	if got := fmt.Sprintf("%v", Secret("")); got != "" {
		t.Errorf("empty secret prints %q", got)
	}
}

// TestUserIDToken: the ID token a session was made from is available to the
// handler, as signed by the provider.
func TestUserIDToken(t *testing.T) {
	t.Parallel()
	u := &User{idToken: "a.b.c"}
	if u.IDToken() != "a.b.c" {
		t.Errorf("IDToken() = %q", u.IDToken())
	}
}
