package interop

import (
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"html"
	"io"
	"maps"
	"net/http"
	"net/http/cookiejar"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"testing"
	"time"
)

// Redirect URIs of the test clients; nothing listens there, the browser stops
// at the redirect.
const (
	redirectURI   = "http://127.0.0.1:9/callback"
	postLogoutURI = "http://127.0.0.1:9/logged-out"
)

// browser is a user agent that steps through every redirect itself.
type browser struct {
	t      *testing.T
	client *http.Client
}

func newBrowser(t *testing.T) *browser {
	jar, err := cookiejar.New(nil)
	if err != nil {
		t.Fatal(err)
	}
	return &browser{t: t, client: &http.Client{
		Jar:     jar,
		Timeout: 10 * time.Second,
		CheckRedirect: func(*http.Request, []*http.Request) error {
			return http.ErrUseLastResponse
		},
	}}
}

// trip is the outcome of following redirects.
type trip struct {
	hops   []string // every URL requested, in order
	stop   *url.URL // the redirect target that ended the trip, if any
	status int      // the status of the last response
	body   string   // the body of the last response
}

func (tr trip) passed(prefix string) bool {
	return slices.ContainsFunc(tr.hops, func(h string) bool { return strings.HasPrefix(h, prefix) })
}

// follow requests the URL and its redirects until a redirect points at a
// URL that starts with stopPrefix, or a response is not a redirect.
func (b *browser) follow(start, stopPrefix string) trip {
	b.t.Helper()
	return b.do(mustRequest(b.t, http.MethodGet, start, nil), stopPrefix)
}

func (b *browser) do(req *http.Request, stopPrefix string) trip {
	b.t.Helper()
	var tr trip
	for range 20 {
		tr.hops = append(tr.hops, req.URL.String())
		resp, err := b.client.Do(req)
		if err != nil {
			b.t.Fatalf("%s %s: %v", req.Method, req.URL, err)
		}
		body, _ := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
		resp.Body.Close()
		tr.status, tr.body = resp.StatusCode, string(body)
		loc := resp.Header.Get("Location")
		if resp.StatusCode < 300 || resp.StatusCode > 399 || loc == "" {
			return tr
		}
		next, err := req.URL.Parse(loc)
		if err != nil {
			b.t.Fatalf("bad Location %q: %v", loc, err)
		}
		if strings.HasPrefix(next.String(), stopPrefix) {
			tr.stop = next
			return tr
		}
		req = mustRequest(b.t, http.MethodGet, next.String(), nil)
	}
	b.t.Fatalf("more than 20 redirects: %v", tr.hops)
	return tr
}

func mustRequest(t *testing.T, method, u string, body io.Reader) *http.Request {
	t.Helper()
	req, err := http.NewRequest(method, u, body)
	if err != nil {
		t.Fatal(err)
	}
	return req
}

// call sends a request with a plain client and decodes a JSON answer.
func call(t *testing.T, req *http.Request) (int, map[string]any) {
	t.Helper()
	c := &http.Client{Timeout: 10 * time.Second}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatalf("%s %s: %v", req.Method, req.URL, err)
	}
	defer resp.Body.Close()
	raw, _ := io.ReadAll(resp.Body)
	var m map[string]any
	if len(raw) > 0 && strings.Contains(resp.Header.Get("Content-Type"), "json") {
		if err := json.Unmarshal(raw, &m); err != nil {
			t.Fatalf("%s %s: decoding %q: %v", req.Method, req.URL, raw, err)
		}
	}
	if m == nil {
		m = map[string]any{"_raw": string(raw)}
	}
	return resp.StatusCode, m
}

func getJSON(t *testing.T, u, bearer string) (int, map[string]any) {
	t.Helper()
	req := mustRequest(t, http.MethodGet, u, nil)
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return call(t, req)
}

func sendJSON(t *testing.T, method, u, bearer string, body any) (int, map[string]any) {
	t.Helper()
	raw, err := json.Marshal(body)
	if err != nil {
		t.Fatal(err)
	}
	req := mustRequest(t, method, u, strings.NewReader(string(raw)))
	req.Header.Set("Content-Type", "application/json")
	if bearer != "" {
		req.Header.Set("Authorization", "Bearer "+bearer)
	}
	return call(t, req)
}

// client is a registered client.
type client struct {
	id, secret, authMethod string
	meta                   map[string]any // the registration response
}

func discover(t *testing.T, op *OP) map[string]any {
	t.Helper()
	status, d := getJSON(t, op.Issuer+"/.well-known/openid-configuration", "")
	if status != http.StatusOK {
		t.Fatalf("discovery: status %d: %v", status, d)
	}
	return d
}

func str(m map[string]any, k string) string {
	s, _ := m[k].(string)
	return s
}

func register(t *testing.T, disc map[string]any, meta map[string]any) client {
	t.Helper()
	full := map[string]any{
		"redirect_uris":             []string{redirectURI},
		"post_logout_redirect_uris": []string{postLogoutURI},
		"grant_types":               []string{"authorization_code", "refresh_token"},
	}
	for k, v := range meta {
		full[k] = v
	}
	status, r := sendJSON(t, http.MethodPost, str(disc, "registration_endpoint"), "", full)
	if status != http.StatusCreated {
		t.Fatalf("registration: status %d: %v", status, r)
	}
	return client{id: str(r, "client_id"), secret: str(r, "client_secret"), authMethod: str(r, "token_endpoint_auth_method"), meta: r}
}

func randomString(t *testing.T) string {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		t.Fatal(err)
	}
	return base64.RawURLEncoding.EncodeToString(b)
}

// authRequest is one authorization request with PKCE, state and nonce.
type authRequest struct {
	state, nonce, verifier string
	url                    string
}

func newAuthRequest(t *testing.T, disc map[string]any, clientID, scope string) authRequest {
	ar := authRequest{state: randomString(t), nonce: randomString(t), verifier: randomString(t)}
	sum := sha256.Sum256([]byte(ar.verifier))
	q := url.Values{
		"response_type":         {"code"},
		"client_id":             {clientID},
		"redirect_uri":          {redirectURI},
		"scope":                 {scope},
		"state":                 {ar.state},
		"nonce":                 {ar.nonce},
		"code_challenge":        {base64.RawURLEncoding.EncodeToString(sum[:])},
		"code_challenge_method": {"S256"},
	}
	ar.url = str(disc, "authorization_endpoint") + "?" + q.Encode()
	return ar
}

// login runs the authorization request to the redirect_uri and checks the
// callback parameters. It returns the code and whether the provider went
// through its interaction (login/consent) step.
func login(t *testing.T, b *browser, op *OP, ar authRequest) (code string, interacted bool) {
	t.Helper()
	tr := b.follow(ar.url, redirectURI)
	if tr.stop == nil {
		t.Fatalf("authorization did not reach the redirect_uri: status %d after %v: %.500s", tr.status, tr.hops, tr.body)
	}
	q := tr.stop.Query()
	if e := q.Get("error"); e != "" {
		t.Fatalf("authorization error %s: %s", e, q.Get("error_description"))
	}
	if q.Get("state") != ar.state {
		t.Errorf("callback state = %q, want %q", q.Get("state"), ar.state)
	}
	if q.Get("iss") != op.Issuer {
		t.Errorf("callback iss = %q, want %q", q.Get("iss"), op.Issuer)
	}
	if q.Get("code") == "" {
		t.Fatalf("callback without code: %s", tr.stop)
	}
	return q.Get("code"), tr.passed(op.InteractionURLPrefix)
}

// tokenRequest posts to the token endpoint with the client's auth method.
func tokenRequest(t *testing.T, disc map[string]any, c client, form url.Values) (int, map[string]any) {
	t.Helper()
	switch c.authMethod {
	case "client_secret_post":
		form.Set("client_id", c.id)
		form.Set("client_secret", c.secret)
	case "none":
		form.Set("client_id", c.id)
	}
	req := mustRequest(t, http.MethodPost, str(disc, "token_endpoint"), strings.NewReader(form.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	if c.authMethod == "client_secret_basic" {
		req.SetBasicAuth(url.QueryEscape(c.id), url.QueryEscape(c.secret))
	}
	return call(t, req)
}

func exchange(t *testing.T, disc map[string]any, c client, ar authRequest, code string) map[string]any {
	t.Helper()
	status, tok := tokenRequest(t, disc, c, url.Values{
		"grant_type":    {"authorization_code"},
		"code":          {code},
		"redirect_uri":  {redirectURI},
		"code_verifier": {ar.verifier},
	})
	if status != http.StatusOK {
		t.Fatalf("token exchange: status %d: %v", status, tok)
	}
	return tok
}

func jwtPayload(t *testing.T, token string) map[string]any {
	t.Helper()
	parts := strings.Split(token, ".")
	if len(parts) != 3 {
		t.Fatalf("not a compact JWS: %q", token)
	}
	raw, err := base64.RawURLEncoding.DecodeString(parts[1])
	if err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	var m map[string]any
	if err := json.Unmarshal(raw, &m); err != nil {
		t.Fatalf("JWT payload: %v", err)
	}
	return m
}

func jwtKid(t *testing.T, token string) string {
	t.Helper()
	raw, err := base64.RawURLEncoding.DecodeString(strings.Split(token, ".")[0])
	if err != nil {
		t.Fatal(err)
	}
	var h struct{ Kid, Alg string }
	if err := json.Unmarshal(raw, &h); err != nil {
		t.Fatal(err)
	}
	return h.Kid
}

func jwksKids(t *testing.T, disc map[string]any) []string {
	t.Helper()
	status, set := getJSON(t, str(disc, "jwks_uri"), "")
	if status != http.StatusOK {
		t.Fatalf("jwks: status %d", status)
	}
	var kids []string
	keys, _ := set["keys"].([]any)
	for _, k := range keys {
		km, _ := k.(map[string]any)
		if km["d"] != nil || km["p"] != nil {
			t.Fatalf("jwks publishes private key material")
		}
		kids = append(kids, str(km, "kid"))
	}
	return kids
}

func checkIDToken(t *testing.T, op *OP, c client, ar authRequest, idToken string) map[string]any {
	t.Helper()
	claims := jwtPayload(t, idToken)
	if claims["nonce"] != ar.nonce {
		t.Errorf("id_token nonce = %v, want %s", claims["nonce"], ar.nonce)
	}
	if claims["iss"] != op.Issuer {
		t.Errorf("id_token iss = %v, want %s", claims["iss"], op.Issuer)
	}
	if claims["aud"] != c.id { // a plain string, not an array
		t.Errorf("id_token aud = %#v, want %q", claims["aud"], c.id)
	}
	if claims["sub"] != TestUserSub {
		t.Errorf("id_token sub = %v", claims["sub"])
	}
	return claims
}

func TestDiscovery(t *testing.T) {
	op := Start(t, Options{PathPrefix: "/oidc"})
	if !strings.HasSuffix(op.Issuer, "/oidc") || !strings.HasPrefix(op.Issuer, "http://127.0.0.1:") {
		t.Fatalf("issuer = %s", op.Issuer)
	}
	d := discover(t, op)
	if d["issuer"] != op.Issuer {
		t.Errorf("issuer = %v, want %s", d["issuer"], op.Issuer)
	}
	for _, k := range []string{"authorization_endpoint", "token_endpoint", "userinfo_endpoint", "jwks_uri", "registration_endpoint", "end_session_endpoint"} {
		if !strings.HasPrefix(str(d, k), op.Issuer+"/") {
			t.Errorf("%s = %v, want under %s", k, d[k], op.Issuer)
		}
	}
	if got := fmt.Sprint(d["code_challenge_methods_supported"]); got != "[S256]" {
		t.Errorf("code_challenge_methods_supported = %s", got)
	}
	if d["authorization_response_iss_parameter_supported"] != true {
		t.Errorf("authorization_response_iss_parameter_supported = %v", d["authorization_response_iss_parameter_supported"])
	}
	methods := fmt.Sprint(d["token_endpoint_auth_methods_supported"])
	for _, m := range []string{"client_secret_basic", "client_secret_post", "none"} {
		if !strings.Contains(methods, m) {
			t.Errorf("token_endpoint_auth_methods_supported = %s, lacks %s", methods, m)
		}
	}
	if kids := jwksKids(t, d); len(kids) != 1 || kids[0] == "" {
		t.Errorf("jwks kids = %v", kids)
	}
	// Outside the prefix there is nothing.
	if status, _ := getJSON(t, fmt.Sprintf("http://127.0.0.1:%d/.well-known/openid-configuration", op.Port), ""); status != http.StatusNotFound {
		t.Errorf("discovery outside the path prefix: status %d", status)
	}
}

func TestCodeFlowClientSecretBasic(t *testing.T) {
	op := Start(t, Options{})
	d := discover(t, op)
	c := register(t, d, nil)
	if c.authMethod != "client_secret_basic" || c.secret == "" {
		t.Fatalf("registration: %v", c.meta)
	}
	if c.meta["client_secret_expires_at"] != float64(0) {
		t.Errorf("client_secret_expires_at = %v, want 0", c.meta["client_secret_expires_at"])
	}
	if str(c.meta, "registration_access_token") == "" || str(c.meta, "registration_client_uri") == "" {
		t.Fatalf("registration without RFC 7592 credentials: %v", c.meta)
	}

	b := newBrowser(t)
	ar := newAuthRequest(t, d, c.id, "openid profile email groups")
	code, interacted := login(t, b, op, ar)
	if !interacted {
		t.Error("first login did not pass through the interaction step")
	}
	tok := exchange(t, d, c, ar, code)
	if tok["token_type"] != "Bearer" || str(tok, "access_token") == "" || str(tok, "refresh_token") == "" {
		t.Fatalf("token response: %v", tok)
	}
	idc := checkIDToken(t, op, c, ar, str(tok, "id_token"))
	keys := slices.Sorted(maps.Keys(idc))
	if want := []string{"aud", "exp", "iat", "iss", "nonce", "sub"}; !slices.Equal(keys, want) {
		t.Errorf("id_token claims = %v, want %v", keys, want)
	}
	if kid := jwtKid(t, str(tok, "id_token")); !slices.Contains(jwksKids(t, d), kid) {
		t.Errorf("id_token kid %s not in jwks", kid)
	}

	status, ui := getJSON(t, str(d, "userinfo_endpoint"), str(tok, "access_token"))
	if status != http.StatusOK {
		t.Fatalf("userinfo: status %d %v", status, ui)
	}
	if ui["sub"] != TestUserSub || ui["name"] != TestUserName || ui["email"] != TestUserEmail || ui["email_verified"] != true || fmt.Sprint(ui["groups"]) != "[staff dev]" {
		t.Errorf("userinfo = %v", ui)
	}

	status, rt := tokenRequest(t, d, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {str(tok, "refresh_token")}})
	if status != http.StatusOK || str(rt, "access_token") == "" || str(rt, "id_token") == "" {
		t.Fatalf("refresh: status %d %v", status, rt)
	}
	if claims := jwtPayload(t, str(rt, "id_token")); claims["sub"] != TestUserSub || claims["aud"] != c.id {
		t.Errorf("refreshed id_token = %v", claims)
	}

	// RFC 7592 read.
	status, rd := getJSON(t, str(c.meta, "registration_client_uri"), str(c.meta, "registration_access_token"))
	if status != http.StatusOK || rd["client_id"] != c.id || rd["client_secret"] != c.secret {
		t.Errorf("RFC 7592 GET: status %d %v", status, rd)
	}
	if status, _ := getJSON(t, str(c.meta, "registration_client_uri"), "wrong"); status != http.StatusUnauthorized {
		t.Errorf("RFC 7592 GET with a wrong token: status %d", status)
	}

	// A second authorization rides on the provider session.
	ar2 := newAuthRequest(t, d, c.id, "openid profile email groups")
	if _, interacted := login(t, b, op, ar2); interacted {
		t.Error("second authorization went through the interaction step despite the session")
	}

	// A replayed code is refused and revokes what was issued from it.
	if status, r := tokenRequest(t, d, c, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {ar.verifier}}); status != http.StatusBadRequest || r["error"] != "invalid_grant" {
		t.Errorf("code replay: status %d %v", status, r)
	}
	if status, _ := getJSON(t, str(d, "userinfo_endpoint"), str(tok, "access_token")); status != http.StatusUnauthorized {
		t.Errorf("userinfo after code replay: status %d", status)
	}

	// PKCE is required, also for confidential clients.
	q, _ := url.Parse(ar2.url)
	v := q.Query()
	v.Del("code_challenge")
	v.Del("code_challenge_method")
	tr := b.follow(str(d, "authorization_endpoint")+"?"+v.Encode(), redirectURI)
	if tr.stop == nil || tr.stop.Query().Get("error") != "invalid_request" || tr.stop.Query().Get("iss") != op.Issuer {
		t.Errorf("authorization without PKCE: %v %d", tr.stop, tr.status)
	}
}

func TestClientSecretPostAndPublicClient(t *testing.T) {
	op := Start(t, Options{IDTokenScopeClaims: true})
	d := discover(t, op)

	post := register(t, d, map[string]any{"token_endpoint_auth_method": "client_secret_post"})
	if post.authMethod != "client_secret_post" || post.secret == "" {
		t.Fatalf("registration: %v", post.meta)
	}
	b := newBrowser(t)
	ar := newAuthRequest(t, d, post.id, "openid email")
	code, _ := login(t, b, op, ar)
	// A wrong secret is refused with 401.
	wrong := post
	wrong.secret = "wrong"
	if status, r := tokenRequest(t, d, wrong, url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {ar.verifier}}); status != http.StatusUnauthorized || r["error"] != "invalid_client" {
		t.Errorf("wrong secret: status %d %v", status, r)
	}
	// oidc-provider takes client_secret_basic and client_secret_post as one
	// method: the other one works too.
	basic := post
	basic.authMethod = "client_secret_basic"
	exchange(t, d, basic, ar, code)
	ar = newAuthRequest(t, d, post.id, "openid email")
	code, interacted := login(t, b, op, ar)
	if interacted {
		t.Error("same client and scope went through the interaction step again")
	}
	tok := exchange(t, d, post, ar, code)
	idc := checkIDToken(t, op, post, ar, str(tok, "id_token"))
	if idc["email"] != TestUserEmail {
		t.Errorf("IDTokenScopeClaims: id_token = %v", idc)
	}

	pub := register(t, d, map[string]any{"token_endpoint_auth_method": "none"})
	if pub.authMethod != "none" || pub.secret != "" {
		t.Fatalf("public registration: %v", pub.meta)
	}
	ar = newAuthRequest(t, d, pub.id, "openid")
	code, interacted = login(t, b, op, ar)
	if !interacted {
		t.Error("new client did not go through the consent interaction")
	}
	tok = exchange(t, d, pub, ar, code)
	checkIDToken(t, op, pub, ar, str(tok, "id_token"))
	rt1 := str(tok, "refresh_token")
	status, r := tokenRequest(t, d, pub, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}})
	if status != http.StatusOK || str(r, "refresh_token") == "" || str(r, "refresh_token") == rt1 {
		t.Fatalf("public refresh (rotating): status %d %v", status, r)
	}
	if status, r := tokenRequest(t, d, pub, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {rt1}}); status != http.StatusBadRequest || r["error"] != "invalid_grant" {
		t.Errorf("reuse of a rotated refresh token: status %d %v", status, r)
	}

	// Without the refresh_token grant type there is no refresh token.
	noRT := register(t, d, map[string]any{"grant_types": []string{"authorization_code"}})
	ar = newAuthRequest(t, d, noRT.id, "openid")
	code, _ = login(t, b, op, ar)
	if tok := exchange(t, d, noRT, ar, code); tok["refresh_token"] != nil {
		t.Errorf("refresh token for a client without the grant type: %v", tok)
	}
}

func TestInitialAccessToken(t *testing.T) {
	const iat = "initial-T0ken"
	op := Start(t, Options{InitialAccessToken: iat, KeepRegistrationAccessToken: true})
	d := discover(t, op)
	meta := map[string]any{"redirect_uris": []string{redirectURI}}
	for _, bearer := range []string{"", "wrong"} {
		status, r := sendJSON(t, http.MethodPost, str(d, "registration_endpoint"), bearer, meta)
		if status != http.StatusUnauthorized || r["error"] != "invalid_token" {
			t.Errorf("registration with bearer %q: status %d %v", bearer, status, r)
		}
	}
	status, r := sendJSON(t, http.MethodPost, str(d, "registration_endpoint"), iat, meta)
	if status != http.StatusCreated || str(r, "client_id") == "" {
		t.Fatalf("registration with the initial access token: status %d %v", status, r)
	}

	// Without --secret-lifetime an RFC 7592 update keeps the secret, and with
	// KeepRegistrationAccessToken it keeps the registration access token too.
	rat, regURI := str(r, "registration_access_token"), str(r, "registration_client_uri")
	status, up := sendJSON(t, http.MethodPut, regURI, rat, map[string]any{
		"client_id":     r["client_id"],
		"client_secret": r["client_secret"],
		"redirect_uris": []string{redirectURI, "http://127.0.0.1:9/other"},
	})
	if status != http.StatusOK || up["client_secret"] != r["client_secret"] || up["client_secret_expires_at"] != float64(0) || up["registration_access_token"] != rat {
		t.Errorf("RFC 7592 PUT: status %d %v", status, up)
	}
	// Server-managed fields must not be sent back.
	status, up = sendJSON(t, http.MethodPut, regURI, rat, map[string]any{
		"client_id":                r["client_id"],
		"redirect_uris":            []string{redirectURI},
		"client_secret_expires_at": 0,
	})
	if status != http.StatusBadRequest || up["error"] != "invalid_request" {
		t.Errorf("RFC 7592 PUT with client_secret_expires_at: status %d %v", status, up)
	}
}

func TestSecretLifetime(t *testing.T) {
	op := Start(t, Options{SecretLifetime: 2 * time.Second})
	d := discover(t, op)
	c := register(t, d, nil)
	exp, _ := c.meta["client_secret_expires_at"].(float64)
	now := time.Now().Unix()
	if exp < float64(now+1) || exp > float64(now+3) {
		t.Fatalf("client_secret_expires_at = %v, now %d", c.meta["client_secret_expires_at"], now)
	}

	b := newBrowser(t)
	ar := newAuthRequest(t, d, c.id, "openid")
	code, _ := login(t, b, op, ar)
	tok := exchange(t, d, c, ar, code)

	time.Sleep(time.Until(time.Unix(int64(exp), 0)) + 100*time.Millisecond)

	// The authorization endpoint does not care; the token endpoint does.
	ar = newAuthRequest(t, d, c.id, "openid")
	code, _ = login(t, b, op, ar)
	form := url.Values{"grant_type": {"authorization_code"}, "code": {code}, "redirect_uri": {redirectURI}, "code_verifier": {ar.verifier}}
	// Status 400, not 401: the provider's "secret expired" error is not its
	// "authentication failed" one.
	if status, r := tokenRequest(t, d, c, form); status != http.StatusBadRequest || r["error"] != "invalid_client" {
		t.Fatalf("expired secret at the token endpoint: status %d %v", status, r)
	}
	if status, r := tokenRequest(t, d, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {str(tok, "refresh_token")}}); status != http.StatusBadRequest || r["error"] != "invalid_client" {
		t.Errorf("refresh with an expired secret: status %d %v", status, r)
	}

	// RFC 7592 read still works and shows the expired secret.
	regURI, rat := str(c.meta, "registration_client_uri"), str(c.meta, "registration_access_token")
	status, rd := getJSON(t, regURI, rat)
	if status != http.StatusOK || rd["client_secret"] != c.secret || rd["client_secret_expires_at"] != c.meta["client_secret_expires_at"] {
		t.Fatalf("RFC 7592 GET after expiry: status %d %v", status, rd)
	}

	// RFC 7592 update: send the metadata back without the four server-managed fields.
	update := map[string]any{}
	for k, v := range rd {
		switch k {
		case "registration_access_token", "registration_client_uri", "client_secret_expires_at", "client_id_issued_at":
		default:
			update[k] = v
		}
	}
	status, up := sendJSON(t, http.MethodPut, regURI, rat, update)
	if status != http.StatusOK {
		t.Fatalf("RFC 7592 PUT: status %d %v", status, up)
	}
	if str(up, "client_secret") == "" || up["client_secret"] == c.secret {
		t.Fatalf("RFC 7592 PUT did not issue a new secret: %v", up)
	}
	if newExp, _ := up["client_secret_expires_at"].(float64); newExp <= exp {
		t.Errorf("new client_secret_expires_at = %v, old %v", up["client_secret_expires_at"], exp)
	}
	if str(up, "registration_access_token") == rat {
		t.Errorf("registration access token not rotated")
	}
	if status, _ := getJSON(t, regURI, rat); status != http.StatusUnauthorized {
		t.Errorf("old registration access token after PUT: status %d", status)
	}

	// The code obtained before the update is still good with the new secret.
	c.secret = str(up, "client_secret")
	if status, r := tokenRequest(t, d, c, form); status != http.StatusOK {
		t.Errorf("token exchange with the new secret: status %d %v", status, r)
	}
}

func TestLogoutRedirectOnly(t *testing.T) {
	op := Start(t, Options{PathPrefix: "/op", AccessTokenTTL: 5 * time.Second, IDTokenTTL: 7 * time.Second})
	d := discover(t, op)
	c := register(t, d, nil)
	b := newBrowser(t)
	ar := newAuthRequest(t, d, c.id, "openid")
	code, _ := login(t, b, op, ar)
	tok := exchange(t, d, c, ar, code)
	if tok["expires_in"] != float64(5) {
		t.Errorf("expires_in = %v, want 5", tok["expires_in"])
	}
	if idc := jwtPayload(t, str(tok, "id_token")); idc["exp"].(float64)-idc["iat"].(float64) != 7 {
		t.Errorf("id_token lifetime: iat %v exp %v, want 7 s", idc["iat"], idc["exp"])
	}

	q := url.Values{"id_token_hint": {str(tok, "id_token")}, "post_logout_redirect_uri": {postLogoutURI}, "state": {"bye"}}
	tr := b.follow(str(d, "end_session_endpoint")+"?"+q.Encode(), postLogoutURI)
	if tr.stop == nil {
		t.Fatalf("logout did not reach the post_logout_redirect_uri: status %d after %v: %.500s", tr.status, tr.hops, tr.body)
	}
	if tr.stop.Query().Get("state") != "bye" {
		t.Errorf("post logout redirect = %s", tr.stop)
	}
	if !tr.passed(op.Issuer + "/session/end/auto?") {
		t.Errorf("logout did not pass through the auto-confirmation: %v", tr.hops)
	}
	// A browser without a provider session is sent back all the same.
	tr = newBrowser(t).follow(str(d, "end_session_endpoint")+"?"+q.Encode(), postLogoutURI)
	if tr.stop == nil || tr.stop.Query().Get("state") != "bye" {
		t.Errorf("logout without a session: status %d stop %v after %v", tr.status, tr.stop, tr.hops)
	}
	checkLoggedOut(t, b, op, d, c, tok)
}

func TestLogoutForm(t *testing.T) {
	op := Start(t, Options{FormLogout: true})
	d := discover(t, op)
	c := register(t, d, nil)
	b := newBrowser(t)
	ar := newAuthRequest(t, d, c.id, "openid")
	code, _ := login(t, b, op, ar)
	tok := exchange(t, d, c, ar, code)

	q := url.Values{"id_token_hint": {str(tok, "id_token")}, "post_logout_redirect_uri": {postLogoutURI}, "state": {"bye"}}
	tr := b.follow(str(d, "end_session_endpoint")+"?"+q.Encode(), postLogoutURI)
	if tr.stop != nil || tr.status != http.StatusOK {
		t.Fatalf("form logout: expected a page, got status %d stop %v", tr.status, tr.stop)
	}
	action, fields := parseForm(t, tr.body)
	req := mustRequest(t, http.MethodPost, action, strings.NewReader(fields.Encode()))
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	tr = b.do(req, postLogoutURI)
	if tr.stop == nil || tr.stop.Query().Get("state") != "bye" {
		t.Fatalf("posting the logout form: status %d stop %v: %.500s", tr.status, tr.stop, tr.body)
	}
	checkLoggedOut(t, b, op, d, c, tok)
}

var (
	formRE  = regexp.MustCompile(`(?s)<form[^>]*\baction="([^"]*)"[^>]*>(.*?)</form>`)
	inputRE = regexp.MustCompile(`<input[^>]*\bname="([^"]*)"[^>]*\bvalue="([^"]*)"`)
)

// parseForm returns the action and the hidden inputs of the first form.
func parseForm(t *testing.T, page string) (string, url.Values) {
	t.Helper()
	m := formRE.FindStringSubmatch(page)
	if m == nil {
		t.Fatalf("no form in %.500s", page)
	}
	fields := url.Values{}
	for _, in := range inputRE.FindAllStringSubmatch(m[2], -1) {
		fields.Add(html.UnescapeString(in[1]), html.UnescapeString(in[2]))
	}
	if fields.Get("xsrf") == "" || fields.Get("logout") != "yes" {
		t.Fatalf("logout form fields = %v", fields)
	}
	return html.UnescapeString(m[1]), fields
}

// checkLoggedOut verifies the end of the provider session: the grant's refresh
// token is revoked and the next authorization needs the login step again.
func checkLoggedOut(t *testing.T, b *browser, op *OP, d map[string]any, c client, tok map[string]any) {
	t.Helper()
	if status, r := tokenRequest(t, d, c, url.Values{"grant_type": {"refresh_token"}, "refresh_token": {str(tok, "refresh_token")}}); status != http.StatusBadRequest || r["error"] != "invalid_grant" {
		t.Errorf("refresh after logout: status %d %v", status, r)
	}
	ar := newAuthRequest(t, d, c.id, "openid")
	if _, interacted := login(t, b, op, ar); !interacted {
		t.Error("authorization after logout did not go through the login interaction")
	}
}

func TestRestart(t *testing.T) {
	op := Start(t, Options{PathPrefix: "/r"})
	issuer, port := op.Issuer, op.Port
	d := discover(t, op)
	c := register(t, d, nil)
	b := newBrowser(t)
	ar := newAuthRequest(t, d, c.id, "openid")
	code, _ := login(t, b, op, ar)
	tok := exchange(t, d, c, ar, code)
	kid := jwtKid(t, str(tok, "id_token"))

	op.Restart(t)
	if op.Issuer != issuer || op.Port != port {
		t.Fatalf("restart moved the provider: %s -> %s", issuer, op.Issuer)
	}
	d = discover(t, op)
	if kids := jwksKids(t, d); slices.Contains(kids, kid) || len(kids) != 1 {
		t.Errorf("keys not rotated: old kid %s, new %v", kid, kids)
	}

	// The client is gone: the provider shows its error page instead of redirecting.
	tr := b.follow(newAuthRequest(t, d, c.id, "openid").url, redirectURI)
	if tr.stop != nil || tr.status != http.StatusBadRequest || !strings.Contains(tr.body, "invalid_client") {
		t.Errorf("authorization with a forgotten client: status %d stop %v: %.300s", tr.status, tr.stop, tr.body)
	}
	if status, _ := getJSON(t, str(c.meta, "registration_client_uri"), str(c.meta, "registration_access_token")); status != http.StatusUnauthorized {
		t.Errorf("RFC 7592 GET of a forgotten client: status %d", status)
	}
	if status, r := getJSON(t, str(d, "userinfo_endpoint"), str(tok, "access_token")); status != http.StatusUnauthorized {
		t.Errorf("userinfo with a forgotten token: status %d %v", status, r)
	}
	// A new registration works on the restarted provider.
	c = register(t, d, nil)
	ar = newAuthRequest(t, d, c.id, "openid")
	code, interacted := login(t, b, op, ar)
	if !interacted {
		t.Error("old session cookie survived the restart")
	}
	exchange(t, d, c, ar, code)
}
