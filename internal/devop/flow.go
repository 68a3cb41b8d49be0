package devop

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// authRequest is a validated authorization request waiting for the demo
// user to sign in.
type authRequest struct {
	clientID    string
	redirectURI string
	state       string
	nonce       string
	scope       string
	challenge   string
	dpopJKT     string // RFC 9449 §10: the key the code is bound to
	expires     time.Time
}

// authCode is an issued authorization code.
type authCode struct {
	authRequest
	sub      string
	authTime time.Time
	used     bool
}

// session is the demo user's single sign-on session.
type session struct {
	sub      string
	authTime time.Time
}

// singleParams may appear at most once in a request (RFC 6749 §3.1, §3.2).
var singleParams = []string{
	"response_type", "scope", "state", "nonce", "code_challenge", "code_challenge_method",
	"prompt", "max_age", "response_mode",
}

func (p *Provider) handleAuthorize(w http.ResponseWriter, r *http.Request) {
	var q url.Values
	switch r.Method {
	case http.MethodGet:
		q = r.URL.Query()
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		if err := r.ParseForm(); err != nil {
			p.count(func(s *Stats) { s.Authorize++ })
			errorPage(w, http.StatusBadRequest, "The authorization request could not be read.")
			return
		}
		q = r.PostForm
	default:
		w.Header().Set("Allow", "GET, POST")
		errorPage(w, http.StatusMethodNotAllowed, "The authorization endpoint accepts GET and POST only.")
		return
	}
	p.mu.Lock()
	p.stats.Authorize++
	p.lastAuthorize = cloneValues(q)
	p.mu.Unlock()

	// RFC 9126 §4: a request_uri from the PAR endpoint stands for the
	// parameters pushed with it.
	pushed := false
	if p.parServed() && q.Has("request_uri") {
		if len(q["request_uri"]) > 1 || len(q["client_id"]) > 1 {
			errorPage(w, http.StatusBadRequest, "client_id and request_uri must each be sent once.")
			return
		}
		params, msg := p.takePushed(q.Get("request_uri"), q.Get("client_id"))
		if msg != "" {
			errorPage(w, http.StatusBadRequest, msg)
			return
		}
		q, pushed = params, true
	}
	// RFC 9101 §5: a request object stands for the parameters it carries
	// (pushed or not); it must verify before its redirect_uri is used.
	signed := false
	if p.requestObjectsServed() && q.Has("request") {
		params, err := p.unpackRequestObject(q)
		if err != nil {
			errorPage(w, http.StatusBadRequest, "The request object was refused: "+err.Error())
			return
		}
		q, signed = params, true
		p.count(func(s *Stats) { s.RequestObjects++ })
	}

	// Without a known client and one of its redirect URIs, the user agent
	// cannot be sent back: show an error page (OIDC Core §3.1.2.6).
	if len(q["client_id"]) > 1 || len(q["redirect_uri"]) > 1 {
		errorPage(w, http.StatusBadRequest, "client_id and redirect_uri must each be sent once.")
		return
	}
	clientID, redirectURI := q.Get("client_id"), q.Get("redirect_uri")
	p.mu.Lock()
	c := p.clients[clientID]
	var registered bool
	if c != nil {
		registered = slices.Contains(c.redirectURIs, redirectURI)
	}
	p.mu.Unlock()
	switch {
	case clientID == "":
		errorPage(w, http.StatusBadRequest, "The authorization request has no client_id.")
		return
	case c == nil:
		errorPage(w, http.StatusBadRequest, "The client "+strconv.Quote(clientID)+" is not registered with this provider.")
		return
	case redirectURI == "":
		errorPage(w, http.StatusBadRequest, "The authorization request has no redirect_uri.")
		return
	case !registered:
		errorPage(w, http.StatusBadRequest, "The redirect_uri "+strconv.Quote(redirectURI)+" is not registered for this client.")
		return
	}

	state := q.Get("state")
	fail := func(code, description string) {
		p.redirectBack(w, r, redirectURI, url.Values{"error": {code}, "error_description": {description}}, state)
	}
	for _, name := range singleParams {
		if len(q[name]) > 1 {
			fail("invalid_request", name+" must not be sent more than once")
			return
		}
	}
	if p.opts.RequirePAR && !pushed {
		fail("invalid_request", "pushed authorization requests are required (require_pushed_authorization_requests)")
		return
	}
	if p.opts.RequireRequestObjects && !signed {
		fail("invalid_request", "signed request objects are required (require_signed_request_object)")
		return
	}
	if q.Has("request") {
		fail("request_not_supported", "request objects are not supported")
		return
	}
	if q.Has("request_uri") {
		fail("request_uri_not_supported", "request_uri is not supported")
		return
	}
	switch rt := q.Get("response_type"); rt {
	case "code":
	case "":
		fail("invalid_request", "response_type is required")
		return
	default:
		fail("unsupported_response_type", "only response_type=code is supported")
		return
	}
	if rm := q.Get("response_mode"); rm != "" && rm != "query" {
		fail("invalid_request", "only response_mode=query is supported")
		return
	}
	scope := q.Get("scope")
	if !slices.Contains(strings.Fields(scope), "openid") {
		fail("invalid_scope", "scope must include openid")
		return
	}
	challenge, method := q.Get("code_challenge"), q.Get("code_challenge_method")
	switch {
	case challenge == "":
		fail("invalid_request", "code_challenge is required (PKCE)")
		return
	case method != "S256":
		fail("invalid_request", "code_challenge_method must be S256")
		return
	case !validPKCEValue(challenge):
		fail("invalid_request", "code_challenge is malformed")
		return
	}
	prompt := strings.Fields(q.Get("prompt"))
	promptNone, promptLogin := slices.Contains(prompt, "none"), slices.Contains(prompt, "login")
	if promptNone && len(prompt) > 1 {
		fail("invalid_request", "prompt=none must not be combined with other values")
		return
	}
	maxAge := -1
	if v := q.Get("max_age"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			fail("invalid_request", "max_age must be a non-negative integer")
			return
		}
		maxAge = n
	}

	req := &authRequest{
		clientID:    clientID,
		redirectURI: redirectURI,
		state:       state,
		nonce:       q.Get("nonce"),
		scope:       scope,
		challenge:   challenge,
		dpopJKT:     q.Get("dpop_jkt"),
	}
	sess := p.sessionFor(r)
	needLogin := sess == nil || promptLogin ||
		(maxAge >= 0 && time.Since(sess.authTime) > time.Duration(maxAge)*time.Second)
	switch {
	case !needLogin:
		p.completeAuthorization(w, r, req, sess)
	case promptNone:
		fail("login_required", "the end-user is not signed in")
	case p.opts.AutoLogin:
		p.completeAuthorization(w, r, req, p.startSession(w, r))
	default:
		p.showLoginPage(w, req, c)
	}
}

// validPKCEValue checks the RFC 7636 syntax of a code verifier or challenge.
func validPKCEValue(s string) bool {
	if len(s) < 43 || len(s) > 128 {
		return false
	}
	for _, ch := range s {
		if !('A' <= ch && ch <= 'Z' || 'a' <= ch && ch <= 'z' || '0' <= ch && ch <= '9' ||
			ch == '-' || ch == '.' || ch == '_' || ch == '~') {
			return false
		}
	}
	return true
}

func (p *Provider) showLoginPage(w http.ResponseWriter, req *authRequest, c *client) {
	id := randomToken(24)
	now := p.now()
	req.expires = now.Add(pendingLifetime)
	p.mu.Lock()
	p.pruneLocked(now)
	p.pending[id] = req
	base := p.basePath
	name, _ := c.metadata["client_name"].(string)
	p.mu.Unlock()
	if name == "" {
		name = req.clientID
	}
	userName, _ := p.user["name"].(string)
	if userName == "" {
		userName, _ = p.user["sub"].(string)
	}
	email, _ := p.user["email"].(string)
	writePage(w, http.StatusOK, page{
		Title:   "Sign in",
		Message: "The application " + strconv.Quote(name) + " asks you to sign in.",
		Login:   &loginForm{Action: base + "/login", RequestID: id, User: userName},
		Details: []detail{{"User", userName}, {"Email", email}, {"Scope", req.scope}},
	})
}

// handleLogin completes a sign-in started by the one-click page.
func (p *Provider) handleLogin(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		errorPage(w, http.StatusMethodNotAllowed, "The sign-in form must be submitted with POST.")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		errorPage(w, http.StatusBadRequest, "The sign-in form could not be read.")
		return
	}
	id := r.PostForm.Get("request_id")
	now := p.now()
	p.mu.Lock()
	req := p.pending[id]
	delete(p.pending, id)
	var known bool
	if req != nil {
		_, known = p.clients[req.clientID]
	}
	p.mu.Unlock()
	if req == nil || now.After(req.expires) || !known {
		errorPage(w, http.StatusBadRequest, "This sign-in request is unknown or has expired. Start again from the application.")
		return
	}
	if r.PostForm.Get("action") == "deny" {
		p.redirectBack(w, r, req.redirectURI,
			url.Values{"error": {"access_denied"}, "error_description": {"the end-user cancelled the sign-in"}}, req.state)
		return
	}
	p.completeAuthorization(w, r, req, p.startSession(w, r))
}

// completeAuthorization issues a code for req and redirects to the client.
func (p *Provider) completeAuthorization(w http.ResponseWriter, r *http.Request, req *authRequest, sess *session) {
	code := randomToken(32)
	now := p.now()
	ac := &authCode{authRequest: *req, sub: sess.sub, authTime: sess.authTime}
	ac.expires = now.Add(CodeLifetime)
	p.mu.Lock()
	p.pruneLocked(now)
	p.codes[code] = ac
	p.mu.Unlock()
	p.redirectBack(w, r, req.redirectURI, url.Values{"code": {code}}, req.state)
}

// redirectBack sends the user agent to redirectURI with params, state and
// iss (RFC 9207) added to the registered URI's own query.
func (p *Provider) redirectBack(w http.ResponseWriter, r *http.Request, redirectURI string, params url.Values, state string) {
	if state != "" {
		params.Set("state", state)
	}
	params.Set("iss", p.Issuer())
	if p.opts.Authorize != nil {
		p.opts.Authorize(params)
	}
	redirect(w, r, appendQuery(redirectURI, params))
}

func appendQuery(uri string, params url.Values) string {
	u, err := url.Parse(uri)
	if err != nil {
		return uri
	}
	if enc := params.Encode(); enc != "" {
		if u.RawQuery == "" {
			u.RawQuery = enc
		} else {
			u.RawQuery += "&" + enc
		}
	}
	return u.String()
}

// redirect answers 302 Found to GET requests and 303 See Other to POSTs.
func redirect(w http.ResponseWriter, r *http.Request, to string) {
	status := http.StatusFound
	if r.Method == http.MethodPost {
		status = http.StatusSeeOther
	}
	w.Header().Set("Cache-Control", "no-store")
	http.Redirect(w, r, to, status)
}

func (p *Provider) sessionFor(r *http.Request) *session {
	ck, err := r.Cookie(SSOCookieName)
	if err != nil {
		return nil
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.sessions[ck.Value]
}

// startSession signs the demo user in, replacing the browser's session.
func (p *Provider) startSession(w http.ResponseWriter, r *http.Request) *session {
	id := randomToken(32)
	sub, _ := p.user["sub"].(string)
	sess := &session{sub: sub, authTime: p.now()}
	p.mu.Lock()
	if ck, err := r.Cookie(SSOCookieName); err == nil {
		delete(p.sessions, ck.Value)
	}
	p.sessions[id] = sess
	p.mu.Unlock()
	http.SetCookie(w, p.ssoCookie(id, 0))
	return sess
}

func (p *Provider) ssoCookie(value string, maxAge int) *http.Cookie {
	p.mu.Lock()
	path, secure := p.basePath, p.secure
	p.mu.Unlock()
	if path == "" {
		path = "/"
	}
	return &http.Cookie{
		Name:     SSOCookieName,
		Value:    value,
		Path:     path,
		MaxAge:   maxAge,
		HttpOnly: true,
		Secure:   secure,
		SameSite: http.SameSiteLaxMode,
	}
}

// pruneLocked drops expired codes, pending sign-ins and access tokens.
// Callers hold p.mu.
func (p *Provider) pruneLocked(now time.Time) {
	for k, v := range p.codes {
		if now.After(v.expires.Add(CodeLifetime)) {
			delete(p.codes, k)
		}
	}
	for k, v := range p.pending {
		if now.After(v.expires) {
			delete(p.pending, k)
		}
	}
	for k, v := range p.access {
		if now.After(v.expires) {
			delete(p.access, k)
		}
	}
}
