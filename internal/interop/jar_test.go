package interop_test

import (
	"net/http"
	"net/url"
	"strings"
	"testing"

	"github.com/oidcrp/oidcrp/internal/interop"
)

// ---------------------------------------------------------------------------
// Signed request objects (RFC 9101) at a provider that requires them: the
// RP registers its own key inline, signs every authorization request with
// it, and pushes the request object when the provider also requires PAR.

func TestRPRequestObjectsRequired(t *testing.T) {
	t.Parallel()
	for name, requirePAR := range map[string]bool{"redirect": false, "with PAR": true} {
		t.Run(name, func(t *testing.T) {
			t.Parallel()
			op := interop.Start(t, interop.Options{RequireRequestObjects: true, RequirePAR: requirePAR})
			a := newApp(t, op, nil)
			if a.disc["require_signed_request_object"] != true {
				t.Fatalf("the provider does not require request objects: %v", a.disc)
			}
			p := newBrowser(t).navigate(a.URL + "/dash")
			a.expectSignedIn(p, "/dash")
			clientID := a.rp.Status().ClientID

			// The request object travels in the redirect, or in the PAR body.
			authz := a.endpoint("authorization_endpoint") + "?"
			for _, h := range p.hops {
				if !strings.HasPrefix(h, authz) {
					continue
				}
				u, _ := url.Parse(h)
				q := u.Query()
				switch {
				case requirePAR && (q.Has("request") || !q.Has("request_uri")):
					t.Errorf("authorization request %s, want only the request_uri", h)
				case !requirePAR && (q.Get("request") == "" || q.Get("client_id") != clientID || q.Has("redirect_uri") || q.Has("state")):
					t.Errorf("authorization request %s, want the request object with client_id, response_type and scope", h)
				}
			}
			if requirePAR {
				pushed := a.rec.find(http.MethodPost, a.endpoint("pushed_authorization_request_endpoint"))
				if len(pushed) != 1 || pushed[0].status != http.StatusCreated || pushed[0].form().Get("request") == "" || pushed[0].form().Has("state") {
					t.Fatalf("PAR requests %v, want one carrying the request object, answered 201", pushed)
				}
			}

			// The provider confirms it checked our request object.
			logs := op.Logs()
			route := "authorization"
			if requirePAR {
				route = "pushed_authorization_request"
			}
			want := "request_object: route=" + route + " client=" + clientID + " alg=ES256 typ=oauth-authz-req+jwt kid="
			if !strings.Contains(logs, want) {
				t.Errorf("the provider did not log %q:\n%s", want, logs)
			}
			for _, bad := range []string{"authorization.error", "pushed_authorization_request.error", "server_error"} {
				if strings.Contains(logs, bad) {
					t.Errorf("the provider logged %s:\n%s", bad, logs)
				}
			}
		})
	}
}
