package devop

import (
	"bytes"
	"crypto"
	"crypto/rand"
	"crypto/rsa"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/cookiejar"
	"net/http/httptest"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	jose "github.com/go-jose/go-jose/v4"
)

const redirectURI = "https://rp.example.test/callback"

// env is a provider behind an httptest TLS server and a browser-like client
// that does not follow redirects.
type env struct {
	t   *testing.T
	p   *Provider
	srv *httptest.Server
	hc  *http.Client

	lastSetCookies []*http.Cookie // cookies set by the last sign-in POST
}

func newEnv(t *testing.T, opts Options, prefix string) *env {
	t.Helper()
	p := New(opts)
	srv := httptest.NewTLSServer(p)
	t.Cleanup(srv.Close)
	p.SetIssuer(srv.URL + prefix)
	e := &env{t: t, p: p, srv: srv}
	e.hc = e.newBrowser()
	return e
}

// newBrowser returns a client with its own cookie jar.
func (e *env) newBrowser() *http.Client {
	jar, err := cookiejar.New(nil)
	if err != nil {
		e.t.Fatal(err)
	}
	return &http.Client{
		Transport:     e.srv.Client().Transport,
		Jar:           jar,
		Timeout:       10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse },
	}
}

func (e *env) url(path string) string { return e.p.Issuer() + path }

// do sends req and returns the response with its body read.
func (e *env) do(hc *http.Client, req *http.Request) (*http.Response, []byte) {
	e.t.Helper()
	resp, err := hc.Do(req)
	if err != nil {
		e.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		e.t.Fatal(err)
	}
	return resp, b
}

func (e *env) get(path string) (*http.Response, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url(path), nil)
	return e.do(e.hc, req)
}

func decodeJSON(t *testing.T, b []byte) map[string]any {
	t.Helper()
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		t.Fatalf("not a JSON object: %v: %s", err, b)
	}
	return m
}

// sendJSON sends a JSON request with an optional Bearer token.
func (e *env) sendJSON(method, target, bearer string, body any) (*http.Response, map[string]any) {
	e.t.Helper()
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			e.t.Fatal(err)
		}
		rd = bytes.NewReader(b)
	}
	req, _ := http.NewRequest(method, target, rd)
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	resp, b := e.do(e.hc, req)
	if len(b) == 0 {
		return resp, nil
	}
	return resp, decodeJSON(e.t, b)
}

func (e *env) register(meta map[string]any) map[string]any {
	e.t.Helper()
	resp, body := e.sendJSON(http.MethodPost, e.url("/register"), "", meta)
	if resp.StatusCode != http.StatusCreated {
		e.t.Fatalf("register: status %d: %v", resp.StatusCode, body)
	}
	return body
}

func clientMeta(method string, extra map[string]any) map[string]any {
	m := map[string]any{
		"redirect_uris":              []string{redirectURI},
		"token_endpoint_auth_method": method,
		"client_name":                "Test RP",
	}
	for k, v := range extra {
		m[k] = v
	}
	return m
}

func pkcePair() (verifier, challenge string) {
	b := make([]byte, 32)
	_, _ = rand.Read(b)
	verifier = base64.RawURLEncoding.EncodeToString(b)
	sum := sha256.Sum256([]byte(verifier))
	return verifier, base64.RawURLEncoding.EncodeToString(sum[:])
}

func authParams(clientID, challenge, state, nonce string) url.Values {
	return url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {"openid profile email"},
		"state":                 {state},
		"nonce":                 {nonce},
		"code_challenge":        {challenge},
		"code_challenge_method": {"S256"},
	}
}

func (e *env) authorize(hc *http.Client, q url.Values) (*http.Response, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url("/authorize")+"?"+q.Encode(), nil)
	return e.do(hc, req)
}

// callback checks that resp redirects to redirectURI and returns its query.
func (e *env) callback(resp *http.Response, body []byte) url.Values {
	e.t.Helper()
	if resp.StatusCode != http.StatusFound && resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("want a redirect, got %d: %s", resp.StatusCode, body)
	}
	loc, err := url.Parse(resp.Header.Get("Location"))
	if err != nil {
		e.t.Fatal(err)
	}
	q := loc.Query()
	loc.RawQuery = ""
	if loc.String() != redirectURI {
		e.t.Fatalf("redirected to %s, want %s", loc, redirectURI)
	}
	return q
}

// codeFor runs an auto-login authorization and returns code and verifier.
func (e *env) codeFor(clientID, nonce string) (code, verifier string) {
	e.t.Helper()
	verifier, challenge := pkcePair()
	q := e.callback(e.authorize(e.hc, authParams(clientID, challenge, "st", nonce)))
	if q.Get("code") == "" {
		e.t.Fatalf("no code in callback: %v", q)
	}
	return q.Get("code"), verifier
}

type creds struct{ id, secret, method string }

func credsOf(reg map[string]any) creds {
	s, _ := reg["client_secret"].(string)
	return creds{reg["client_id"].(string), s, reg["token_endpoint_auth_method"].(string)}
}

// token posts form to the token endpoint authenticating as c.
func (e *env) token(c creds, form url.Values) (*http.Response, map[string]any) {
	e.t.Helper()
	form = cloneValues(form)
	switch c.method {
	case "client_secret_post":
		form.Set("client_id", c.id)
		form.Set("client_secret", c.secret)
	case "none":
		form.Set("client_id", c.id)
	}
	req, _ := http.NewRequest(http.MethodPost, e.url("/token"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.method == "client_secret_basic" {
		req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	}
	resp, b := e.do(e.hc, req)
	return resp, decodeJSON(e.t, b)
}

func codeForm(code, verifier string) url.Values {
	return url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {verifier},
	}
}

func wantError(t *testing.T, resp *http.Response, body map[string]any, status int, code string) {
	t.Helper()
	if resp.StatusCode != status || body["error"] != code {
		t.Fatalf("got %d %v, want %d error=%s", resp.StatusCode, body, status, code)
	}
	if _, ok := body["error_description"].(string); !ok {
		t.Errorf("error response without error_description: %v", body)
	}
}

func (e *env) jwks() jose.JSONWebKeySet {
	e.t.Helper()
	resp, b := e.get("/jwks")
	if resp.StatusCode != http.StatusOK {
		e.t.Fatalf("jwks: %d", resp.StatusCode)
	}
	var set jose.JSONWebKeySet
	if err := json.Unmarshal(b, &set); err != nil {
		e.t.Fatal(err)
	}
	return set
}

// verify checks tok against the published JWKS and returns its claims and kid.
func (e *env) verify(tok string) (map[string]any, string, error) {
	jws, err := jose.ParseSignedCompact(tok, []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		return nil, "", err
	}
	kid := jws.Signatures[0].Header.KeyID
	set := e.jwks()
	keys := set.Key(kid)
	if len(keys) != 1 {
		return nil, kid, fmt.Errorf("kid %q not in JWKS", kid)
	}
	payload, err := jws.Verify(keys[0])
	if err != nil {
		return nil, kid, err
	}
	var claims map[string]any
	if err := json.Unmarshal(payload, &claims); err != nil {
		return nil, kid, err
	}
	return claims, kid, nil
}

func (e *env) userinfo(accessToken string) (*http.Response, map[string]any) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url("/userinfo"), nil)
	req.Header.Set("Authorization", "Bearer "+accessToken)
	resp, b := e.do(e.hc, req)
	return resp, decodeJSON(e.t, b)
}

func wantPage(t *testing.T, resp *http.Response, body []byte, status int) {
	t.Helper()
	if resp.StatusCode != status {
		t.Fatalf("status %d, want %d: %s", resp.StatusCode, status, body)
	}
	if !strings.HasPrefix(resp.Header.Get("Content-Type"), "text/html") {
		t.Fatalf("Content-Type %q, want HTML", resp.Header.Get("Content-Type"))
	}
	if !strings.Contains(string(body), "not for production") {
		t.Fatalf("page lacks the not-for-production warning: %s", body)
	}
	if resp.Header.Get("Location") != "" {
		t.Fatalf("error page must not redirect, Location=%s", resp.Header.Get("Location"))
	}
}

func TestDiscovery(t *testing.T) {
	e := newEnv(t, Options{}, "")
	resp, b := e.get("/.well-known/openid-configuration")
	if resp.StatusCode != http.StatusOK || resp.Header.Get("Content-Type") != "application/json" {
		t.Fatalf("discovery: %d %s", resp.StatusCode, resp.Header.Get("Content-Type"))
	}
	doc := decodeJSON(t, b)
	iss := e.p.Issuer()
	for k, want := range map[string]any{
		"issuer":                 iss,
		"authorization_endpoint": iss + "/authorize",
		"token_endpoint":         iss + "/token",
		"userinfo_endpoint":      iss + "/userinfo",
		"jwks_uri":               iss + "/jwks",
		"registration_endpoint":  iss + "/register",
		"end_session_endpoint":   iss + "/end_session",
		"authorization_response_iss_parameter_supported": true,
	} {
		if doc[k] != want {
			t.Errorf("%s = %v, want %v", k, doc[k], want)
		}
	}
	for k, want := range map[string]string{
		"response_types_supported":              "[code]",
		"grant_types_supported":                 "[authorization_code refresh_token]",
		"subject_types_supported":               "[public]",
		"id_token_signing_alg_values_supported": "[RS256]",
		"code_challenge_methods_supported":      "[S256]",
		"token_endpoint_auth_methods_supported": "[client_secret_basic client_secret_post none]",
	} {
		if got := fmt.Sprint(doc[k]); got != want {
			t.Errorf("%s = %s, want %s", k, got, want)
		}
	}
	for _, k := range []string{"scopes_supported", "claims_supported"} {
		if _, ok := doc[k].([]any); !ok {
			t.Errorf("%s missing", k)
		}
	}
	if e.p.Stats().Discovery != 1 {
		t.Errorf("Stats().Discovery = %d", e.p.Stats().Discovery)
	}

	e2 := newEnv(t, Options{NoRegistration: true, NoEndSession: true}, "")
	_, b = e2.get("/.well-known/openid-configuration")
	doc = decodeJSON(t, b)
	if _, ok := doc["registration_endpoint"]; ok {
		t.Error("NoRegistration: registration_endpoint still advertised")
	}
	if _, ok := doc["end_session_endpoint"]; ok {
		t.Error("NoEndSession: end_session_endpoint still advertised")
	}
	if resp, _ := e2.sendJSON(http.MethodPost, e2.url("/register"), "", clientMeta("none", nil)); resp.StatusCode != http.StatusNotFound {
		t.Errorf("NoRegistration: /register answered %d", resp.StatusCode)
	}
	if resp, _ := e2.get("/end_session"); resp.StatusCode != http.StatusNotFound {
		t.Errorf("NoEndSession: /end_session answered %d", resp.StatusCode)
	}
}

func TestCodeFlow(t *testing.T) {
	for _, method := range []string{"client_secret_basic", "client_secret_post", "none"} {
		t.Run(method, func(t *testing.T) {
			e := newEnv(t, Options{AutoLogin: true}, "")
			reg := e.register(clientMeta(method, map[string]any{"x_custom": "kept", "contacts": []string{"ops@example.test"}}))

			id, _ := reg["client_id"].(string)
			if id == "" {
				t.Fatalf("no client_id: %v", reg)
			}
			for _, k := range []string{"client_id_issued_at", "registration_access_token"} {
				if _, ok := reg[k]; !ok {
					t.Errorf("registration response lacks %s", k)
				}
			}
			if got, want := reg["registration_client_uri"], e.p.Issuer()+"/register/"+id; got != want {
				t.Errorf("registration_client_uri = %v, want %v", got, want)
			}
			_, hasSecret := reg["client_secret"]
			_, hasExpiry := reg["client_secret_expires_at"]
			if hasSecret != (method != "none") || hasExpiry != hasSecret {
				t.Errorf("client_secret present %v, client_secret_expires_at present %v for %s", hasSecret, hasExpiry, method)
			}
			if hasExpiry && reg["client_secret_expires_at"] != float64(0) {
				t.Errorf("client_secret_expires_at = %v, want 0", reg["client_secret_expires_at"])
			}
			if reg["x_custom"] != "kept" || fmt.Sprint(reg["contacts"]) != "[ops@example.test]" || reg["client_name"] != "Test RP" {
				t.Errorf("metadata not echoed: %v", reg)
			}
			if fmt.Sprint(reg["response_types"]) != "[code]" || fmt.Sprint(reg["grant_types"]) != "[authorization_code]" ||
				reg["token_endpoint_auth_method"] != method {
				t.Errorf("defaults not echoed: %v", reg)
			}

			verifier, challenge := pkcePair()
			q := e.callback(e.authorize(e.hc, authParams(id, challenge, "state-123", "nonce-456")))
			if q.Get("code") == "" || q.Get("state") != "state-123" || q.Get("iss") != e.p.Issuer() {
				t.Fatalf("callback = %v", q)
			}
			if got := e.p.LastAuthorizeRequest().Get("nonce"); got != "nonce-456" {
				t.Errorf("LastAuthorizeRequest nonce = %q", got)
			}

			resp, tok := e.token(credsOf(reg), codeForm(q.Get("code"), verifier))
			if resp.StatusCode != http.StatusOK {
				t.Fatalf("token: %d %v", resp.StatusCode, tok)
			}
			if resp.Header.Get("Cache-Control") != "no-store" {
				t.Errorf("token response Cache-Control = %q", resp.Header.Get("Cache-Control"))
			}
			if tok["token_type"] != "Bearer" || tok["expires_in"] != float64(3600) || tok["access_token"] == "" {
				t.Errorf("token response = %v", tok)
			}
			if _, ok := tok["refresh_token"]; ok {
				t.Error("refresh_token issued to a client without the refresh_token grant")
			}
			form, header := e.p.LastTokenRequest()
			if form.Get("code") != q.Get("code") {
				t.Errorf("LastTokenRequest form = %v", form)
			}
			if (header.Get("Authorization") != "") != (method == "client_secret_basic") {
				t.Errorf("LastTokenRequest Authorization = %q", header.Get("Authorization"))
			}

			claims, kid, err := e.verify(tok["id_token"].(string))
			if err != nil {
				t.Fatalf("ID token does not verify against the JWKS: %v", err)
			}
			if kid == "" {
				t.Error("ID token without kid")
			}
			now := float64(time.Now().Unix())
			if claims["iss"] != e.p.Issuer() || claims["sub"] != "demo-user" || claims["aud"] != id ||
				claims["nonce"] != "nonce-456" || claims["email"] != "demo@example.test" ||
				claims["name"] != "Demo User" || claims["email_verified"] != true ||
				fmt.Sprint(claims["groups"]) != "[staff]" {
				t.Errorf("ID token claims = %v", claims)
			}
			if exp, _ := claims["exp"].(float64); exp < now+3500 {
				t.Errorf("exp = %v", claims["exp"])
			}
			for _, k := range []string{"iat", "auth_time"} {
				if v, _ := claims[k].(float64); v < now-60 || v > now+1 {
					t.Errorf("%s = %v", k, claims[k])
				}
			}
			if claims["at_hash"] != atHash(tok["access_token"].(string)) {
				t.Errorf("at_hash = %v", claims["at_hash"])
			}

			resp, info := e.userinfo(tok["access_token"].(string))
			if resp.StatusCode != http.StatusOK || info["sub"] != "demo-user" || info["email"] != "demo@example.test" {
				t.Errorf("userinfo: %d %v", resp.StatusCode, info)
			}
			// A token in the query string is refused (Bearer header only).
			req, _ := http.NewRequest(http.MethodGet, e.url("/userinfo")+"?access_token="+url.QueryEscape(tok["access_token"].(string)), nil)
			resp, b := e.do(e.hc, req)
			wantError(t, resp, decodeJSON(t, b), http.StatusBadRequest, "invalid_request")
			resp, info = e.userinfo("bogus")
			wantError(t, resp, info, http.StatusUnauthorized, "invalid_token")
			if !strings.Contains(resp.Header.Get("WWW-Authenticate"), `error="invalid_token"`) {
				t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
			}

			st := e.p.Stats()
			if st.Registration != 1 || st.Authorize != 1 || st.Token != 1 || st.UserInfo != 3 || st.JWKS != 1 {
				t.Errorf("Stats = %+v", st)
			}
			if cl := e.p.Clients(); len(cl) != 1 || cl[0].ID != id || cl[0].AuthMethod != method || cl[0].Metadata["x_custom"] != "kept" {
				t.Errorf("Clients() = %+v", cl)
			}
		})
	}
}

func TestClientAuthentication(t *testing.T) {
	e := newEnv(t, Options{AutoLogin: true, AwkwardSecrets: true}, "")
	reg := e.register(clientMeta("client_secret_basic", nil))
	c := credsOf(reg)
	if !strings.ContainsAny(c.secret, ":+% ") {
		t.Fatalf("AwkwardSecrets: secret %q has nothing to encode", c.secret)
	}

	// Without form-urlencoding the Basic credentials, the secret is wrong.
	code, verifier := e.codeFor(c.id, "")
	req, _ := http.NewRequest(http.MethodPost, e.url("/token"), strings.NewReader(codeForm(code, verifier).Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	req.SetBasicAuth(c.id, c.secret)
	resp, b := e.do(e.hc, req)
	wantError(t, resp, decodeJSON(t, b), http.StatusUnauthorized, "invalid_client")
	if !strings.HasPrefix(resp.Header.Get("WWW-Authenticate"), "Basic") {
		t.Errorf("WWW-Authenticate = %q", resp.Header.Get("WWW-Authenticate"))
	}

	// Encoded correctly it works (the code was not consumed by a failed
	// client authentication).
	if resp, tok := e.token(c, codeForm(code, verifier)); resp.StatusCode != http.StatusOK {
		t.Fatalf("encoded Basic: %d %v", resp.StatusCode, tok)
	}

	// The registered method is enforced.
	code, verifier = e.codeFor(c.id, "")
	resp, body := e.token(creds{c.id, c.secret, "client_secret_post"}, codeForm(code, verifier))
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_client")
	resp, body = e.token(creds{c.id, "", "none"}, codeForm(code, verifier))
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_client")
	resp, body = e.token(creds{"no-such-client", "x", "client_secret_basic"}, codeForm(code, verifier))
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_client")

	// An expired secret is refused.
	ex := newEnv(t, Options{AutoLogin: true, SecretLifetime: -time.Minute}, "")
	reg = ex.register(clientMeta("client_secret_post", nil))
	if exp, _ := reg["client_secret_expires_at"].(float64); exp == 0 || exp > float64(time.Now().Unix()) {
		t.Errorf("client_secret_expires_at = %v, want in the past", reg["client_secret_expires_at"])
	}
	code, verifier = ex.codeFor(reg["client_id"].(string), "")
	resp, body = ex.token(credsOf(reg), codeForm(code, verifier))
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_client")

	// ForceAuthMethod overrides the requested method.
	fe := newEnv(t, Options{ForceAuthMethod: "client_secret_post"}, "")
	reg = fe.register(clientMeta("none", nil))
	if reg["token_endpoint_auth_method"] != "client_secret_post" || reg["client_secret"] == nil {
		t.Errorf("ForceAuthMethod: %v", reg)
	}
}

func TestCodeSingleUseAndPKCE(t *testing.T) {
	e := newEnv(t, Options{AutoLogin: true}, "")
	c := credsOf(e.register(clientMeta("client_secret_basic", nil)))

	// Wrong verifier.
	code, verifier := e.codeFor(c.id, "")
	other, _ := pkcePair()
	resp, body := e.token(c, codeForm(code, other))
	wantError(t, resp, body, http.StatusBadRequest, "invalid_grant")
	// The attempt consumed the code.
	resp, body = e.token(c, codeForm(code, verifier))
	wantError(t, resp, body, http.StatusBadRequest, "invalid_grant")

	// Missing verifier, wrong redirect_uri.
	code, _ = e.codeFor(c.id, "")
	f := codeForm(code, "")
	f.Del("code_verifier")
	resp, body = e.token(c, f)
	wantError(t, resp, body, http.StatusBadRequest, "invalid_grant")
	code, verifier = e.codeFor(c.id, "")
	f = codeForm(code, verifier)
	f.Set("redirect_uri", "https://rp.example.test/other")
	resp, body = e.token(c, f)
	wantError(t, resp, body, http.StatusBadRequest, "invalid_grant")

	// Reuse after success fails and revokes the tokens issued from the code.
	code, verifier = e.codeFor(c.id, "")
	resp, tok := e.token(c, codeForm(code, verifier))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %v", resp.StatusCode, tok)
	}
	resp, body = e.token(c, codeForm(code, verifier))
	wantError(t, resp, body, http.StatusBadRequest, "invalid_grant")
	resp, body = e.userinfo(tok["access_token"].(string))
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_token")

	// Unknown and unsupported grants.
	resp, body = e.token(c, codeForm("no-such-code", verifier))
	wantError(t, resp, body, http.StatusBadRequest, "invalid_grant")
	resp, body = e.token(c, url.Values{"grant_type": {"password"}})
	wantError(t, resp, body, http.StatusBadRequest, "unsupported_grant_type")
}

func TestAuthorizeErrors(t *testing.T) {
	e := newEnv(t, Options{AutoLogin: true}, "")
	id := e.register(clientMeta("none", nil))["client_id"].(string)
	_, challenge := pkcePair()

	// Errors the RP must never see: an error page, no redirect.
	for name, mutate := range map[string]func(url.Values){
		"unknown client":       func(q url.Values) { q.Set("client_id", "nope") },
		"no client":            func(q url.Values) { q.Del("client_id") },
		"unregistered uri":     func(q url.Values) { q.Set("redirect_uri", "https://evil.example.test/cb") },
		"no redirect uri":      func(q url.Values) { q.Del("redirect_uri") },
		"redirect uri variant": func(q url.Values) { q.Set("redirect_uri", redirectURI+"/") },
	} {
		t.Run(name, func(t *testing.T) {
			q := authParams(id, challenge, "s", "n")
			mutate(q)
			resp, b := e.authorize(e.hc, q)
			wantPage(t, resp, b, http.StatusBadRequest)
		})
	}

	// Errors returned to the client, with state and iss.
	for name, tc := range map[string]struct {
		mutate func(url.Values)
		code   string
	}{
		"no challenge":      {func(q url.Values) { q.Del("code_challenge") }, "invalid_request"},
		"plain method":      {func(q url.Values) { q.Set("code_challenge_method", "plain") }, "invalid_request"},
		"no method":         {func(q url.Values) { q.Del("code_challenge_method") }, "invalid_request"},
		"no openid":         {func(q url.Values) { q.Set("scope", "profile") }, "invalid_scope"},
		"token flow":        {func(q url.Values) { q.Set("response_type", "token") }, "unsupported_response_type"},
		"no response_type":  {func(q url.Values) { q.Del("response_type") }, "invalid_request"},
		"request object":    {func(q url.Values) { q.Set("request", "eyJ...") }, "request_not_supported"},
		"duplicate state":   {func(q url.Values) { q.Add("state", "again") }, "invalid_request"},
		"prompt none+login": {func(q url.Values) { q.Set("prompt", "none login") }, "invalid_request"},
	} {
		t.Run(name, func(t *testing.T) {
			q := authParams(id, challenge, "s", "n")
			tc.mutate(q)
			cb := e.callback(e.authorize(e.hc, q))
			if cb.Get("error") != tc.code || cb.Get("iss") != e.p.Issuer() || cb.Get("code") != "" {
				t.Errorf("callback = %v, want error=%s with iss", cb, tc.code)
			}
			if name != "duplicate state" && cb.Get("state") != "s" {
				t.Errorf("state not echoed: %v", cb)
			}
		})
	}
}

func TestLoginPageAndSessions(t *testing.T) {
	e := newEnv(t, Options{}, "")
	reg := e.register(clientMeta("client_secret_basic", map[string]any{
		"post_logout_redirect_uris": []string{"https://rp.example.test/bye"},
	}))
	c := credsOf(reg)
	verifier, challenge := pkcePair()

	// prompt=none without a session.
	q := authParams(c.id, challenge, "s1", "n1")
	q.Set("prompt", "none")
	if cb := e.callback(e.authorize(e.hc, q)); cb.Get("error") != "login_required" {
		t.Fatalf("prompt=none: %v", cb)
	}

	code := e.signInWithPage(e.hc, authParams(c.id, challenge, "s1", "n1"), "s1")
	resp, tok := e.token(c, codeForm(code, verifier))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %v", resp.StatusCode, tok)
	}
	idToken := tok["id_token"].(string)

	// The SSO cookie is HttpOnly and scoped to the issuer.
	var sso *http.Cookie
	for _, ck := range e.lastSetCookies {
		if ck.Name == SSOCookieName {
			sso = ck
		}
	}
	if sso == nil || !sso.HttpOnly || sso.Value == "" {
		t.Fatalf("SSO cookie = %+v", sso)
	}

	// SSO: the next authorization redirects at once; prompt=login shows the
	// page again.
	_, challenge = pkcePair()
	cb := e.callback(e.authorize(e.hc, authParams(c.id, challenge, "s2", "n2")))
	if cb.Get("code") == "" || cb.Get("state") != "s2" {
		t.Fatalf("SSO authorize: %v", cb)
	}
	q = authParams(c.id, challenge, "s3", "n3")
	q.Set("prompt", "login")
	resp, b := e.authorize(e.hc, q)
	wantPage(t, resp, b, http.StatusOK)

	// Another browser has no session.
	resp, b = e.authorize(e.newBrowser(), authParams(c.id, challenge, "s4", "n4"))
	wantPage(t, resp, b, http.StatusOK)

	// Unregistered post_logout_redirect_uri: error page, still signed in.
	lq := url.Values{"id_token_hint": {idToken}, "post_logout_redirect_uri": {"https://evil.example.test/"}, "state": {"x"}}
	resp, b = e.getWith(e.hc, "/end_session?"+lq.Encode())
	wantPage(t, resp, b, http.StatusBadRequest)
	if cb := e.callback(e.authorize(e.hc, authParams(c.id, challenge, "s5", "n5"))); cb.Get("code") == "" {
		t.Fatalf("session lost after a refused logout: %v", cb)
	}

	// RP-initiated logout echoes state and ends the SSO session.
	lq.Set("post_logout_redirect_uri", "https://rp.example.test/bye")
	lq.Set("state", "logout-state")
	resp, b = e.getWith(e.hc, "/end_session?"+lq.Encode())
	if resp.StatusCode != http.StatusFound || resp.Header.Get("Location") != "https://rp.example.test/bye?state=logout-state" {
		t.Fatalf("end_session: %d Location=%q %s", resp.StatusCode, resp.Header.Get("Location"), b)
	}
	resp, b = e.authorize(e.hc, authParams(c.id, challenge, "s6", "n6"))
	wantPage(t, resp, b, http.StatusOK)

	// client_id instead of id_token_hint; no post_logout_redirect_uri shows a page.
	resp, b = e.getWith(e.hc, "/end_session?client_id="+url.QueryEscape(c.id))
	wantPage(t, resp, b, http.StatusOK)
	if !strings.Contains(string(b), "Signed out") {
		t.Errorf("signed-out page: %s", b)
	}
	// A forged hint is refused.
	forged := e.p.SignWithForeignKey(map[string]any{"iss": e.p.Issuer(), "aud": c.id, "sub": "demo-user"})
	resp, b = e.getWith(e.hc, "/end_session?id_token_hint="+forged+"&post_logout_redirect_uri="+url.QueryEscape("https://rp.example.test/bye"))
	wantPage(t, resp, b, http.StatusBadRequest)

	// EndSessions forgets the session server-side.
	e.signInWithPage(e.hc, authParams(c.id, challenge, "s7", "n7"), "s7")
	e.p.EndSessions()
	resp, b = e.authorize(e.hc, authParams(c.id, challenge, "s8", "n8"))
	wantPage(t, resp, b, http.StatusOK)
	if st := e.p.Stats(); st.EndSession != 4 {
		t.Errorf("Stats().EndSession = %d", st.EndSession)
	}
}

var (
	formAction = regexp.MustCompile(`<form method="post" action="([^"]+)">`)
	requestID  = regexp.MustCompile(`name="request_id" value="([^"]+)"`)
)

// signInWithPage expects the one-click page, submits it and returns the code.
func (e *env) signInWithPage(hc *http.Client, q url.Values, state string) string {
	e.t.Helper()
	resp, b := e.authorize(hc, q)
	wantPage(e.t, resp, b, http.StatusOK)
	action, id := formAction.FindSubmatch(b), requestID.FindSubmatch(b)
	if action == nil || id == nil {
		e.t.Fatalf("no sign-in form: %s", b)
	}
	target, err := url.Parse(e.srv.URL)
	if err != nil {
		e.t.Fatal(err)
	}
	target = target.ResolveReference(&url.URL{Path: string(action[1])})
	form := url.Values{"request_id": {string(id[1])}, "action": {"login"}}
	req, _ := http.NewRequest(http.MethodPost, target.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, b = e.do(hc, req)
	e.lastSetCookies = resp.Cookies()
	if resp.StatusCode != http.StatusSeeOther {
		e.t.Fatalf("sign-in POST: %d %s", resp.StatusCode, b)
	}
	cb := e.callback(resp, b)
	if cb.Get("code") == "" || cb.Get("state") != state || cb.Get("iss") != e.p.Issuer() {
		e.t.Fatalf("callback after sign-in = %v", cb)
	}
	// The request id is single use.
	req, _ = http.NewRequest(http.MethodPost, target.String(), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, b = e.do(hc, req)
	wantPage(e.t, resp, b, http.StatusBadRequest)
	return cb.Get("code")
}

func (e *env) getWith(hc *http.Client, pathAndQuery string) (*http.Response, []byte) {
	e.t.Helper()
	req, _ := http.NewRequest(http.MethodGet, e.url(pathAndQuery), nil)
	return e.do(hc, req)
}

func TestRefreshToken(t *testing.T) {
	e := newEnv(t, Options{AutoLogin: true}, "")
	c := credsOf(e.register(clientMeta("client_secret_post", map[string]any{
		"grant_types": []string{"authorization_code", "refresh_token"},
	})))
	code, verifier := e.codeFor(c.id, "the-nonce")
	_, tok := e.token(c, codeForm(code, verifier))
	rt, _ := tok["refresh_token"].(string)
	if rt == "" {
		t.Fatalf("no refresh_token: %v", tok)
	}
	first, _, err := e.verify(tok["id_token"].(string))
	if err != nil {
		t.Fatal(err)
	}

	resp, tok2 := e.token(c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("refresh: %d %v", resp.StatusCode, tok2)
	}
	rt2, _ := tok2["refresh_token"].(string)
	if rt2 == "" || rt2 == rt {
		t.Errorf("refresh token not rotated: %q", rt2)
	}
	second, _, err := e.verify(tok2["id_token"].(string))
	if err != nil {
		t.Fatal(err)
	}
	for _, k := range []string{"iss", "sub", "aud", "auth_time"} {
		if first[k] != second[k] {
			t.Errorf("refreshed ID token %s = %v, want %v", k, second[k], first[k])
		}
	}
	if _, ok := second["nonce"]; ok || first["nonce"] != "the-nonce" {
		t.Errorf("nonce: first %v, refreshed %v", first["nonce"], second["nonce"])
	}
	// The old refresh token stopped working.
	resp, body := e.token(c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt}})
	wantError(t, resp, body, http.StatusBadRequest, "invalid_grant")
	// Scope can narrow but not widen.
	resp, body = e.token(c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt2}, "scope": {"openid admin"}})
	wantError(t, resp, body, http.StatusBadRequest, "invalid_scope")
}

func TestInitialAccessToken(t *testing.T) {
	e := newEnv(t, Options{InitialAccessToken: "let-me-in"}, "")
	for _, bearer := range []string{"", "wrong"} {
		resp, body := e.sendJSON(http.MethodPost, e.url("/register"), bearer, clientMeta("none", nil))
		wantError(t, resp, body, http.StatusUnauthorized, "invalid_token")
		if got := resp.Header.Get("WWW-Authenticate"); got != `Bearer error="invalid_token"` {
			t.Errorf("WWW-Authenticate = %q", got)
		}
	}
	if len(e.p.Clients()) != 0 {
		t.Fatal("client registered without the initial access token")
	}
	resp, body := e.sendJSON(http.MethodPost, e.url("/register"), "let-me-in", clientMeta("none", nil))
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("with token: %d %v", resp.StatusCode, body)
	}
}

func TestRegistrationValidation(t *testing.T) {
	e := newEnv(t, Options{AuthMethods: []string{"client_secret_basic", "none"}}, "")
	for name, tc := range map[string]struct {
		meta map[string]any
		code string
	}{
		"no redirect_uris":   {map[string]any{"client_name": "x"}, "invalid_redirect_uri"},
		"empty redirect":     {map[string]any{"redirect_uris": []string{}}, "invalid_redirect_uri"},
		"relative redirect":  {map[string]any{"redirect_uris": []string{"/callback"}}, "invalid_redirect_uri"},
		"fragment":           {map[string]any{"redirect_uris": []string{"https://rp.example.test/cb#frag"}}, "invalid_redirect_uri"},
		"not a list":         {map[string]any{"redirect_uris": redirectURI}, "invalid_redirect_uri"},
		"unsupported method": {clientMeta("client_secret_post", nil), "invalid_client_metadata"},
		"private_key_jwt":    {clientMeta("private_key_jwt", nil), "invalid_client_metadata"},
		"implicit":           {clientMeta("none", map[string]any{"response_types": []string{"id_token"}}), "invalid_client_metadata"},
		"refresh only":       {clientMeta("none", map[string]any{"grant_types": []string{"refresh_token"}}), "invalid_client_metadata"},
		"client_credentials": {clientMeta("none", map[string]any{"grant_types": []string{"authorization_code", "client_credentials"}}), "invalid_client_metadata"},
		"bad logout uri":     {clientMeta("none", map[string]any{"post_logout_redirect_uris": []string{"bye"}}), "invalid_client_metadata"},
		"HS256 ID tokens":    {clientMeta("none", map[string]any{"id_token_signed_response_alg": "HS256"}), "invalid_client_metadata"},
	} {
		t.Run(name, func(t *testing.T) {
			resp, body := e.sendJSON(http.MethodPost, e.url("/register"), "", tc.meta)
			wantError(t, resp, body, http.StatusBadRequest, tc.code)
		})
	}
	resp, body := e.sendJSON(http.MethodPost, e.url("/register"), "", "not an object")
	wantError(t, resp, body, http.StatusBadRequest, "invalid_client_metadata")
	req, _ := http.NewRequest(http.MethodPost, e.url("/register"), strings.NewReader(`{"redirect_uris":["`+strings.Repeat("a", 1<<20)+`"]}`))
	resp, b := e.do(e.hc, req)
	if resp.StatusCode != http.StatusRequestEntityTooLarge || decodeJSON(t, b)["error"] == nil {
		t.Errorf("oversized body: %d %s", resp.StatusCode, b)
	}
	if len(e.p.Clients()) != 0 {
		t.Errorf("invalid requests registered clients: %+v", e.p.Clients())
	}
	// The default method is client_secret_basic; server-assigned fields in
	// the request are ignored.
	reg := e.register(map[string]any{"redirect_uris": []string{redirectURI}, "client_id": "chosen", "client_secret": "chosen"})
	if reg["token_endpoint_auth_method"] != "client_secret_basic" || reg["client_id"] == "chosen" || reg["client_secret"] == "chosen" {
		t.Errorf("registration = %v", reg)
	}
}

func TestClientConfiguration(t *testing.T) {
	e := newEnv(t, Options{RotateRegistrationToken: true, SecretLifetime: time.Hour}, "")
	reg := e.register(clientMeta("client_secret_basic", nil))
	uri := reg["registration_client_uri"].(string)
	tok := reg["registration_access_token"].(string)
	id := reg["client_id"].(string)
	if exp, _ := reg["client_secret_expires_at"].(float64); exp < float64(time.Now().Add(59*time.Minute).Unix()) {
		t.Errorf("client_secret_expires_at = %v", reg["client_secret_expires_at"])
	}

	// Bad token, unknown client.
	resp, body := e.sendJSON(http.MethodGet, uri, "wrong", nil)
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_token")
	resp, body = e.sendJSON(http.MethodGet, e.url("/register/unknown"), tok, nil)
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_token")

	// GET returns the client information and rotates the token.
	resp, info := e.sendJSON(http.MethodGet, uri, tok, nil)
	if resp.StatusCode != http.StatusOK || info["client_id"] != id || info["client_secret"] != reg["client_secret"] ||
		info["client_name"] != "Test RP" || info["registration_client_uri"] != uri {
		t.Fatalf("GET: %d %v", resp.StatusCode, info)
	}
	newTok := info["registration_access_token"].(string)
	if newTok == tok {
		t.Fatal("registration access token not rotated on GET")
	}
	resp, body = e.sendJSON(http.MethodGet, uri, tok, nil)
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_token")
	tok = newTok

	// Forbidden fields and a missing client_id in PUT.
	update := clientMeta("client_secret_basic", map[string]any{"client_id": id, "client_name": "Renamed",
		"redirect_uris": []string{redirectURI, "https://rp.example.test/cb2"}})
	for _, k := range []string{"registration_access_token", "registration_client_uri", "client_secret_expires_at", "client_id_issued_at"} {
		bad := clientMeta("client_secret_basic", map[string]any{"client_id": id, k: "x"})
		resp, body = e.sendJSON(http.MethodPut, uri, tok, bad)
		wantError(t, resp, body, http.StatusBadRequest, "invalid_client_metadata")
	}
	noID := clientMeta("client_secret_basic", nil)
	resp, body = e.sendJSON(http.MethodPut, uri, tok, noID)
	wantError(t, resp, body, http.StatusBadRequest, "invalid_client_metadata")
	badSecret := clientMeta("client_secret_basic", map[string]any{"client_id": id, "client_secret": "guess"})
	resp, body = e.sendJSON(http.MethodPut, uri, tok, badSecret)
	wantError(t, resp, body, http.StatusBadRequest, "invalid_client_metadata")
	if st := e.p.Stats(); st.RegistrationUpdate != 6 || st.RegistrationRead != 4 {
		t.Errorf("Stats = %+v", st)
	}

	// A valid PUT replaces the metadata and, with SecretLifetime, the secret.
	resp, info = e.sendJSON(http.MethodPut, uri, tok, update)
	if resp.StatusCode != http.StatusOK || info["client_name"] != "Renamed" || fmt.Sprint(info["redirect_uris"]) != fmt.Sprint(update["redirect_uris"]) {
		t.Fatalf("PUT: %d %v", resp.StatusCode, info)
	}
	if info["client_secret"] == reg["client_secret"] || info["client_secret_expires_at"] == nil {
		t.Errorf("PUT did not issue a new secret: %v", info)
	}
	if info["registration_access_token"] == tok {
		t.Error("registration access token not rotated on PUT")
	}
	cl := e.p.Clients()
	if len(cl) != 1 || len(cl[0].RedirectURIs) != 2 || cl[0].Secret != info["client_secret"] || cl[0].SecretExpiresAt.IsZero() {
		t.Errorf("Clients() after PUT = %+v", cl)
	}
	tok = info["registration_access_token"].(string)

	// DELETE.
	resp, _ = e.sendJSON(http.MethodDelete, uri, tok, nil)
	if resp.StatusCode != http.StatusNoContent {
		t.Fatalf("DELETE: %d", resp.StatusCode)
	}
	resp, body = e.sendJSON(http.MethodGet, uri, tok, nil)
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_token")
	if len(e.p.Clients()) != 0 || e.p.Stats().RegistrationDelete != 1 {
		t.Error("client not deleted")
	}

	// Without rotation the token is stable and the secret kept.
	s := newEnv(t, Options{}, "")
	reg = s.register(clientMeta("client_secret_basic", nil))
	uri, tok = reg["registration_client_uri"].(string), reg["registration_access_token"].(string)
	_, info = s.sendJSON(http.MethodGet, uri, tok, nil)
	if info["registration_access_token"] != tok {
		t.Error("token rotated without RotateRegistrationToken")
	}
	_, info = s.sendJSON(http.MethodPut, uri, tok, clientMeta("client_secret_basic", map[string]any{"client_id": reg["client_id"]}))
	if info["client_secret"] != reg["client_secret"] || info["client_secret_expires_at"] != float64(0) {
		t.Errorf("secret changed on PUT without SecretLifetime: %v", info)
	}
}

func TestForgetClients(t *testing.T) {
	e := newEnv(t, Options{AutoLogin: true}, "")
	c := credsOf(e.register(clientMeta("client_secret_basic", nil)))
	code, verifier := e.codeFor(c.id, "")
	e.p.ForgetClients()
	resp, body := e.token(c, codeForm(code, verifier))
	wantError(t, resp, body, http.StatusUnauthorized, "invalid_client")
	_, challenge := pkcePair()
	r, b := e.authorize(e.hc, authParams(c.id, challenge, "s", "n"))
	wantPage(t, r, b, http.StatusBadRequest)
	if len(e.p.Clients()) != 0 {
		t.Error("Clients() not empty")
	}
}

func TestKeys(t *testing.T) {
	e := newEnv(t, Options{AutoLogin: true}, "")
	set := e.jwks()
	if len(set.Keys) != 1 {
		t.Fatalf("JWKS has %d keys", len(set.Keys))
	}
	k := set.Keys[0]
	if k.KeyID == "" || k.Use != "sig" || k.Algorithm != "RS256" || !k.IsPublic() {
		t.Fatalf("JWK = %+v", k)
	}
	oldKid := k.KeyID

	c := credsOf(e.register(clientMeta("none", map[string]any{
		"post_logout_redirect_uris": []string{"https://rp.example.test/bye"},
	})))
	code, verifier := e.codeFor(c.id, "")
	_, tok := e.token(c, codeForm(code, verifier))
	oldIDToken := tok["id_token"].(string)

	crafted := e.p.SignJWT(map[string]any{"iss": e.p.Issuer(), "sub": "someone"}, nil)
	if claims, kid, err := e.verify(crafted); err != nil || kid != oldKid || claims["sub"] != "someone" {
		t.Errorf("SignJWT: %v %s %v", claims, kid, err)
	}
	if _, _, err := e.verify(e.p.SignWithForeignKey(map[string]any{"iss": e.p.Issuer()})); err == nil {
		t.Error("a foreign-key token verified against the JWKS")
	}
	unsigned := e.p.SignJWT(map[string]any{"sub": "x"}, map[string]any{"alg": "none", "kid": nil})
	if !strings.HasSuffix(unsigned, ".") || strings.Count(unsigned, ".") != 2 {
		t.Errorf("alg none token = %s", unsigned)
	}

	e.p.RotateKeys()
	set = e.jwks()
	if len(set.Keys) != 1 || set.Keys[0].KeyID == oldKid {
		t.Fatalf("after RotateKeys JWKS = %+v", set.Keys)
	}
	if _, _, err := e.verify(oldIDToken); err == nil {
		t.Error("old ID token still verifies: old key still published")
	}
	code, verifier = e.codeFor(c.id, "")
	_, tok = e.token(c, codeForm(code, verifier))
	if _, kid, err := e.verify(tok["id_token"].(string)); err != nil || kid != set.Keys[0].KeyID {
		t.Errorf("new ID token: kid %s, err %v", kid, err)
	}

	// An ID token signed by the retired key is still a valid id_token_hint.
	lq := url.Values{"id_token_hint": {oldIDToken}, "post_logout_redirect_uri": {"https://rp.example.test/bye"}}
	resp, b := e.getWith(e.hc, "/end_session?"+lq.Encode())
	if resp.StatusCode != http.StatusFound {
		t.Errorf("end_session with a retired-key hint: %d %s", resp.StatusCode, b)
	}
}

// TestSigningKeyOption: a provider given a key publishes and signs with
// exactly that key, under its thumbprint as kid.
func TestSigningKeyOption(t *testing.T) {
	priv, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	e := newEnv(t, Options{SigningKey: priv}, "")
	set := e.jwks()
	if len(set.Keys) != 1 {
		t.Fatalf("JWKS has %d keys", len(set.Keys))
	}
	pub, ok := set.Keys[0].Key.(*rsa.PublicKey)
	if !ok || !pub.Equal(&priv.PublicKey) {
		t.Fatalf("JWKS key %T is not the given key", set.Keys[0].Key)
	}
	tp, err := (&jose.JSONWebKey{Key: &priv.PublicKey}).Thumbprint(crypto.SHA256)
	if err != nil {
		t.Fatal(err)
	}
	if want := base64.RawURLEncoding.EncodeToString(tp); set.Keys[0].KeyID != want {
		t.Errorf("kid %s, want the thumbprint %s", set.Keys[0].KeyID, want)
	}
	jws, err := jose.ParseSignedCompact(e.p.SignJWT(map[string]any{"sub": "x"}, nil), []jose.SignatureAlgorithm{jose.RS256})
	if err != nil {
		t.Fatal(err)
	}
	if _, err := jws.Verify(&priv.PublicKey); err != nil {
		t.Errorf("a token does not verify with the given key: %v", err)
	}
	other := New(Options{SigningKey: priv})
	if other.currentKey().kid != e.p.currentKey().kid {
		t.Error("two providers given one key have different kids")
	}
}

func TestHooks(t *testing.T) {
	e := newEnv(t, Options{
		AutoLogin: true,
		Discovery: func(doc map[string]any) { doc["issuer"] = "https://attacker.example.test" },
		Registration: func(status *int, body map[string]any) {
			*status = http.StatusOK
			body["client_name"] = "Hooked"
		},
		Authorize:     func(v url.Values) { v.Del("iss") },
		IDToken:       func(claims, header map[string]any) { claims["aud"] = "someone-else"; header["alg"] = "none" },
		TokenResponse: func(body map[string]any) { body["token_type"] = "mac" },
		UserInfo:      func(claims map[string]any) { claims["sub"] = "other-user" },
	}, "")
	_, b := e.get("/.well-known/openid-configuration")
	if decodeJSON(t, b)["issuer"] != "https://attacker.example.test" {
		t.Error("Discovery hook not applied")
	}
	resp, reg := e.sendJSON(http.MethodPost, e.url("/register"), "", clientMeta("none", nil))
	if resp.StatusCode != http.StatusOK || reg["client_name"] != "Hooked" {
		t.Errorf("Registration hook: %d %v", resp.StatusCode, reg)
	}
	c := credsOf(reg)
	verifier, challenge := pkcePair()
	cb := e.callback(e.authorize(e.hc, authParams(c.id, challenge, "s", "n")))
	if cb.Has("iss") || cb.Get("code") == "" {
		t.Errorf("Authorize hook: %v", cb)
	}
	_, tok := e.token(c, codeForm(cb.Get("code"), verifier))
	if tok["token_type"] != "mac" {
		t.Errorf("TokenResponse hook: %v", tok)
	}
	idt := tok["id_token"].(string)
	parts := strings.Split(idt, ".")
	hdr, _ := base64.RawURLEncoding.DecodeString(parts[0])
	payload, _ := base64.RawURLEncoding.DecodeString(parts[1])
	if !strings.Contains(string(hdr), `"alg":"none"`) || parts[2] != "" || !strings.Contains(string(payload), `"aud":"someone-else"`) {
		t.Errorf("IDToken hook: %s %s", hdr, payload)
	}
	_, info := e.userinfo(tok["access_token"].(string))
	if info["sub"] != "other-user" {
		t.Errorf("UserInfo hook: %v", info)
	}
}

// TestRegistrationRequestHook: the client is registered with the metadata the
// hook leaves, on registration and on RFC 7592 update alike.
func TestRegistrationRequestHook(t *testing.T) {
	e := newEnv(t, Options{RegistrationRequest: func(m map[string]any) {
		delete(m, "post_logout_redirect_uris")
		m["token_endpoint_auth_method"] = "client_secret_post"
	}}, "")
	reg := e.register(clientMeta("client_secret_basic", map[string]any{"post_logout_redirect_uris": []string{redirectURI}}))
	if _, ok := reg["post_logout_redirect_uris"]; ok || reg["token_endpoint_auth_method"] != "client_secret_post" {
		t.Errorf("registration response %v", reg)
	}
	c := e.p.Clients()[0]
	if len(c.PostLogoutRedirectURIs) != 0 || c.AuthMethod != "client_secret_post" {
		t.Errorf("registered %+v", c)
	}
	update := clientMeta("client_secret_basic", map[string]any{"post_logout_redirect_uris": []string{redirectURI}, "client_id": c.ID})
	resp, body := e.sendJSON(http.MethodPut, reg["registration_client_uri"].(string), c.RegistrationAccessToken, update)
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("update: %d %v", resp.StatusCode, body)
	}
	if c := e.p.Clients()[0]; len(c.PostLogoutRedirectURIs) != 0 || c.AuthMethod != "client_secret_post" {
		t.Errorf("updated %+v", c)
	}
}

func TestIssuerWithPath(t *testing.T) {
	e := newEnv(t, Options{AutoLogin: true}, "/oidc")
	if !strings.HasSuffix(e.p.Issuer(), "/oidc") {
		t.Fatalf("issuer %s", e.p.Issuer())
	}
	resp, b := e.get("/.well-known/openid-configuration")
	if resp.StatusCode != http.StatusOK || decodeJSON(t, b)["token_endpoint"] != e.p.Issuer()+"/token" {
		t.Fatalf("discovery under the path: %d %s", resp.StatusCode, b)
	}
	req, _ := http.NewRequest(http.MethodGet, e.srv.URL+"/.well-known/openid-configuration", nil)
	if resp, _ := e.do(e.hc, req); resp.StatusCode != http.StatusNotFound {
		t.Errorf("discovery outside the issuer path: %d", resp.StatusCode)
	}
	reg := e.register(clientMeta("client_secret_basic", nil))
	if !strings.HasPrefix(reg["registration_client_uri"].(string), e.p.Issuer()+"/register/") {
		t.Errorf("registration_client_uri = %v", reg["registration_client_uri"])
	}
	c := credsOf(reg)
	code, verifier := e.codeFor(c.id, "n")
	resp, tok := e.token(c, codeForm(code, verifier))
	if resp.StatusCode != http.StatusOK {
		t.Fatalf("token: %d %v", resp.StatusCode, tok)
	}
	if claims, _, err := e.verify(tok["id_token"].(string)); err != nil || claims["iss"] != e.p.Issuer() {
		t.Fatalf("ID token: %v %v", claims, err)
	}
	if resp, _ := e.sendJSON(http.MethodGet, reg["registration_client_uri"].(string), reg["registration_access_token"].(string), nil); resp.StatusCode != http.StatusOK {
		t.Errorf("RFC 7592 GET under the path: %d", resp.StatusCode)
	}

	// The sign-in page posts back under the path, and the cookie is scoped to it.
	m := newEnv(t, Options{}, "/oidc")
	mc := credsOf(m.register(clientMeta("none", nil)))
	_, challenge := pkcePair()
	m.signInWithPage(m.hc, authParams(mc.id, challenge, "s", "n"), "s")
	for _, ck := range m.lastSetCookies {
		if ck.Name == SSOCookieName && ck.Path != "/oidc" {
			t.Errorf("SSO cookie path = %q", ck.Path)
		}
	}
}

func TestStart(t *testing.T) {
	for _, addr := range []string{"0.0.0.0:0", ":0", "192.0.2.1:8080", "example.com:80", "[::]:0", "no-port"} {
		if p, stop, err := Start(addr, "", Options{}); err == nil {
			stop()
			t.Errorf("Start(%q) succeeded with issuer %s", addr, p.Issuer())
		}
	}

	p, stop, err := Start("", "/oidc/", Options{AutoLogin: true})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	iss := p.Issuer()
	if !strings.HasPrefix(iss, "http://127.0.0.1:") || !strings.HasSuffix(iss, "/oidc") {
		t.Fatalf("issuer = %s", iss)
	}
	hc := &http.Client{Timeout: 10 * time.Second}
	resp, err := hc.Get(iss + "/.well-known/openid-configuration")
	if err != nil {
		t.Fatal(err)
	}
	var doc map[string]any
	err = json.NewDecoder(resp.Body).Decode(&doc)
	resp.Body.Close()
	if err != nil || doc["issuer"] != iss {
		t.Fatalf("discovery: %v %v", doc, err)
	}
	resp, err = hc.Get(iss + "/")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(b), NotForProduction) {
		t.Errorf("index page lacks the warning: %s", b)
	}

	stop()
	stop() // idempotent
	if resp, err := hc.Get(iss + "/.well-known/openid-configuration"); err == nil {
		resp.Body.Close()
		t.Error("provider still serving after stop")
	}
}

// TestConcurrentFlows runs complete flows in parallel (meaningful with -race).
func TestConcurrentFlows(t *testing.T) {
	e := newEnv(t, Options{AutoLogin: true}, "")
	c := credsOf(e.register(clientMeta("client_secret_basic", map[string]any{
		"grant_types": []string{"authorization_code", "refresh_token"},
	})))
	var wg sync.WaitGroup
	errs := make(chan string, 16)
	for i := 0; i < 8; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			hc := e.newBrowser()
			verifier, challenge := pkcePair()
			req, _ := http.NewRequest(http.MethodGet, e.url("/authorize")+"?"+authParams(c.id, challenge, "s", "n").Encode(), nil)
			resp, err := hc.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			resp.Body.Close()
			loc, _ := url.Parse(resp.Header.Get("Location"))
			form := codeForm(loc.Query().Get("code"), verifier)
			req, _ = http.NewRequest(http.MethodPost, e.url("/token"), strings.NewReader(form.Encode()))
			req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
			req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
			resp, err = hc.Do(req)
			if err != nil {
				errs <- err.Error()
				return
			}
			resp.Body.Close()
			if resp.StatusCode != http.StatusOK {
				errs <- fmt.Sprintf("token status %d", resp.StatusCode)
			}
			_ = e.p.Stats()
			_ = e.p.Clients()
		}()
	}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for i := 0; i < 3; i++ {
			e.p.RotateKeys()
		}
	}()
	wg.Wait()
	close(errs)
	for msg := range errs {
		t.Error(msg)
	}
	if got := e.p.Stats().Token; got != 8 {
		t.Errorf("Stats().Token = %d", got)
	}
	if !slices.Contains(e.p.Clients()[0].GrantTypes, "refresh_token") {
		t.Error("GrantTypes missing refresh_token")
	}
}
