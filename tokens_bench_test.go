package oidcrp

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"golang.org/x/oauth2"
)

// BenchmarkUserClient compares a downstream request through the user's
// client (UserClient, a fresh token) with one through a plain http.Client
// sending a static token, against a local server.
func BenchmarkUserClient(b *testing.B) {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Header.Get("Authorization") != "Bearer the-token" {
			w.WriteHeader(http.StatusUnauthorized)
		}
	}))
	defer api.Close()
	rp, err := New(Config{Issuer: "https://op.example", RedirectURL: "https://app.example/cb", KeepTokens: true})
	if err != nil {
		b.Fatal(err)
	}
	base := api.Client().Transport
	rp.cfg.HTTPClient = &http.Client{Transport: base}
	u := &User{Issuer: "https://op.example", Subject: "s", sid: "x", Expiry: time.Now().Add(time.Hour),
		accessToken: "the-token", accessExpiry: time.Now().Add(time.Hour), refreshToken: "r", tokensAt: time.Now()}
	req := httptest.NewRequest(http.MethodGet, "https://app.example/", nil)
	_, ctx := rp.withTokens(req.Context(), httptest.NewRecorder(), req, rp.track(u))
	user, err := UserClient(ctx)
	if err != nil {
		b.Fatal(err)
	}
	static := &http.Client{Transport: &oauth2.Transport{Source: oauth2.StaticTokenSource(&oauth2.Token{AccessToken: "the-token"}), Base: base}}
	for name, hc := range map[string]*http.Client{"static": static, "user": user} {
		b.Run(name, func(b *testing.B) {
			b.ReportAllocs()
			for b.Loop() {
				resp, err := hc.Get(api.URL)
				if err != nil || resp.StatusCode != http.StatusOK {
					b.Fatal(err, resp)
				}
				_, _ = io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
			}
		})
	}
}
