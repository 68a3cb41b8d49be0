package devop

import (
	"crypto/sha256"
	"crypto/subtle"
	"errors"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

// grant is what an access or refresh token stands for.
type grant struct {
	clientID string
	sub      string
	scope    string
	authTime time.Time
	code     string // the authorization code the grant came from
}

type accessToken struct {
	grant
	expires time.Time
	jkt     string // the DPoP key the token is bound to (RFC 9449), if any
}

type refreshToken struct {
	grant
}

// tokenError is an RFC 6749 §5.2 error response.
type tokenError struct {
	status      int
	code        string
	description string
}

// postedForm answers anything but POST with 405 and otherwise parses the
// form body of a request to an endpoint that takes one, counting the
// request and keeping its form and headers for tests (into *lastForm and
// *lastHeader). ok is false when it already answered.
func (p *Provider) postedForm(w http.ResponseWriter, r *http.Request, endpoint string, count func(*Stats), lastForm *url.Values, lastHeader *http.Header) (form url.Values, parseErr error, ok bool) {
	if r.Method != http.MethodPost {
		p.count(count)
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST at "+endpoint)
		return nil, nil, false
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	parseErr = r.ParseForm()
	form = r.PostForm
	p.mu.Lock()
	count(&p.stats)
	*lastForm = cloneValues(form)
	if *lastForm == nil {
		*lastForm = url.Values{}
	}
	*lastHeader = r.Header.Clone()
	p.mu.Unlock()
	return form, parseErr, true
}

func badGrant(description string) *tokenError {
	return &tokenError{http.StatusBadRequest, "invalid_grant", description}
}

func (p *Provider) handleToken(w http.ResponseWriter, r *http.Request) {
	form, parseErr, ok := p.postedForm(w, r, "the token endpoint", func(s *Stats) { s.Token++ }, &p.lastTokenForm, &p.lastTokenHeader)
	if !ok {
		return
	}
	if parseErr != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "the request body must be application/x-www-form-urlencoded")
		return
	}
	for k, vs := range form {
		if len(vs) > 1 {
			writeError(w, http.StatusBadRequest, "invalid_request", k+" must not be sent more than once")
			return
		}
	}

	c, basic, terr := p.authenticateClient(r, form, "token")
	var jkt string
	if terr == nil {
		jkt, terr = p.tokenDPoP(w, r)
	}
	if terr == nil {
		switch gt := form.Get("grant_type"); gt {
		case "authorization_code":
			terr = p.redeemCode(w, c, form, jkt)
		case "refresh_token":
			terr = p.redeemRefreshToken(w, c, form, jkt)
		case "":
			terr = &tokenError{http.StatusBadRequest, "invalid_request", "grant_type is required"}
		default:
			terr = &tokenError{http.StatusBadRequest, "unsupported_grant_type", "grant_type " + strconv.Quote(gt) + " is not supported"}
		}
	}
	if terr != nil {
		if terr.status == http.StatusUnauthorized && basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="devop"`)
		}
		writeError(w, terr.status, terr.code, terr.description)
	}
}

// clientCopy returns a copy of the registered client id, if there is one.
func (p *Provider) clientCopy(id string) (client, bool) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if c := p.clients[id]; c != nil {
		return *c, true
	}
	return client{}, false
}

// authenticateClient authenticates the client with the method it
// registered, at endpoint ("token", "par" or "revocation"). It returns a
// copy of the client and whether HTTP Basic was used.
func (p *Provider) authenticateClient(r *http.Request, form url.Values, endpoint string) (client, bool, *tokenError) {
	unauthorized := func(description string) *tokenError {
		return &tokenError{http.StatusUnauthorized, "invalid_client", description}
	}
	user, pass, basic := r.BasicAuth()
	if r.Header.Get("Authorization") != "" && !basic {
		return client{}, false, unauthorized("only HTTP Basic client authentication is accepted in the Authorization header")
	}
	if form.Has("client_assertion") || form.Has("client_assertion_type") {
		if basic {
			return client{}, true, &tokenError{http.StatusBadRequest, "invalid_request", "use only one client authentication method"}
		}
		c, terr := p.verifyAssertion(form, endpoint)
		return c, false, terr
	}
	var id, secret, method string
	switch {
	case basic:
		var err1, err2 error
		id, err1 = url.QueryUnescape(user)
		secret, err2 = url.QueryUnescape(pass)
		if p.opts.RawBasic {
			id, secret, err1, err2 = user, pass, nil, nil
		}
		if err1 != nil || err2 != nil {
			return client{}, true, unauthorized("the Basic credentials are not form-urlencoded (RFC 6749 §2.3.1)")
		}
		if form.Has("client_secret") {
			return client{}, true, &tokenError{http.StatusBadRequest, "invalid_request", "use only one client authentication method"}
		}
		if fid := form.Get("client_id"); fid != "" && fid != id {
			return client{}, true, unauthorized("client_id in the body does not match the Basic credentials")
		}
		method = "client_secret_basic"
	case form.Has("client_secret"):
		id, secret, method = form.Get("client_id"), form.Get("client_secret"), "client_secret_post"
	default:
		id, method = form.Get("client_id"), "none"
	}
	if id == "" {
		return client{}, basic, unauthorized("client authentication is required")
	}
	c, ok := p.clientCopy(id)
	if !ok {
		return client{}, basic, unauthorized("unknown client")
	}
	if c.authMethod != method && !(p.opts.AnyAuthMethod && c.authMethod != "none" && method != "none") {
		return client{}, basic, unauthorized("the client is registered for " + c.authMethod + " but authenticated with " + method)
	}
	if method != "none" {
		if c.secret == "" || subtle.ConstantTimeCompare([]byte(secret), []byte(c.secret)) != 1 {
			return client{}, basic, unauthorized("invalid client secret")
		}
		if c.secretExpired(p.now()) {
			return client{}, basic, unauthorized("the client secret has expired")
		}
	}
	return c, basic, nil
}

func (p *Provider) redeemCode(w http.ResponseWriter, c client, form url.Values, jkt string) *tokenError {
	code := form.Get("code")
	if code == "" {
		return &tokenError{http.StatusBadRequest, "invalid_request", "code is required"}
	}
	now := p.now()
	p.mu.Lock()
	ac := p.codes[code]
	switch {
	case ac == nil:
		p.mu.Unlock()
		return badGrant("unknown or expired authorization code")
	case ac.clientID != c.id:
		p.mu.Unlock()
		return badGrant("the authorization code was issued to another client")
	case ac.used:
		// RFC 6749 §4.1.2: revoke what the code produced.
		p.revokeCodeLocked(code)
		p.mu.Unlock()
		return badGrant("the authorization code has already been used")
	}
	ac.used = true
	p.mu.Unlock()

	switch {
	case now.After(ac.expires):
		return badGrant("the authorization code has expired")
	case form.Get("redirect_uri") != ac.redirectURI:
		return badGrant("redirect_uri does not match the authorization request")
	case form.Get("code_verifier") == "":
		return badGrant("code_verifier is required (PKCE)")
	case !validPKCEValue(form.Get("code_verifier")):
		return badGrant("code_verifier is malformed")
	case s256(form.Get("code_verifier")) != ac.challenge:
		return badGrant("code_verifier does not match the code_challenge")
	case ac.dpopJKT != "" && ac.dpopJKT != jkt:
		return badGrant("the authorization code is bound to another DPoP key (dpop_jkt)")
	}
	g := grant{clientID: c.id, sub: ac.sub, scope: ac.scope, authTime: ac.authTime, code: code}
	p.issueTokens(w, c, g, ac.nonce, jkt)
	return nil
}

func s256(verifier string) string {
	sum := sha256.Sum256([]byte(verifier))
	return b64(sum[:])
}

// revokeCodeLocked revokes the tokens issued from an authorization code.
// Callers hold p.mu.
func (p *Provider) revokeCodeLocked(code string) {
	for k, v := range p.access {
		if v.code == code {
			delete(p.access, k)
		}
	}
	for k, v := range p.refresh {
		if v.code == code {
			delete(p.refresh, k)
		}
	}
}

func (p *Provider) redeemRefreshToken(w http.ResponseWriter, c client, form url.Values, jkt string) *tokenError {
	tok := form.Get("refresh_token")
	if tok == "" {
		return &tokenError{http.StatusBadRequest, "invalid_request", "refresh_token is required"}
	}
	if !slices.Contains(c.grantTypes, "refresh_token") {
		return &tokenError{http.StatusBadRequest, "unauthorized_client", "the client is not registered for the refresh_token grant"}
	}
	p.mu.Lock()
	rt := p.refresh[tok]
	if rt == nil || rt.clientID != c.id {
		p.mu.Unlock()
		return badGrant("unknown, rotated or revoked refresh token")
	}
	g := rt.grant
	if s := form.Get("scope"); s != "" {
		granted := strings.Fields(g.scope)
		for _, sc := range strings.Fields(s) {
			if !slices.Contains(granted, sc) {
				p.mu.Unlock()
				return &tokenError{http.StatusBadRequest, "invalid_scope", "scope " + strconv.Quote(sc) + " was not granted"}
			}
		}
		g.scope = s
	}
	delete(p.refresh, tok) // rotation: the old token stops working
	p.mu.Unlock()
	p.issueTokens(w, c, g, "", jkt)
	return nil
}

// issueTokens stores and returns an access token, an ID token and, for
// clients registered for it, a refresh token.
// With jkt, the access token is DPoP-bound to that key (token_type DPoP).
func (p *Provider) issueTokens(w http.ResponseWriter, c client, g grant, nonce, jkt string) {
	now := p.now()
	at := randomToken(32)
	var rt string
	p.mu.Lock()
	p.pruneLocked(now)
	p.access[at] = &accessToken{grant: g, expires: now.Add(p.opts.AccessTokenLifetime), jkt: jkt}
	if slices.Contains(c.grantTypes, "refresh_token") {
		rt = randomToken(32)
		p.refresh[rt] = &refreshToken{grant: g}
	}
	key, issuer := p.key, p.issuer
	p.mu.Unlock()

	claims := map[string]any{}
	for k, v := range p.user {
		claims[k] = deepCopy(v)
	}
	claims["iss"] = issuer
	claims["sub"] = g.sub
	claims["aud"] = c.id
	claims["iat"] = now.Unix()
	claims["exp"] = now.Add(p.opts.IDTokenLifetime).Unix()
	claims["auth_time"] = g.authTime.Unix()
	claims["at_hash"] = atHash(at)
	if nonce != "" {
		claims["nonce"] = nonce
	}
	header := map[string]any{"alg": "RS256", "typ": "JWT", "kid": key.kid}
	if p.opts.IDToken != nil {
		p.opts.IDToken(claims, header)
	}
	idToken, err := p.wrapIDToken(c, signToken(key, header, claims))
	if err != nil {
		writeError(w, http.StatusInternalServerError, "server_error", "encrypting the ID token: "+err.Error())
		return
	}
	body := map[string]any{
		"access_token": at,
		"token_type":   tokenType(jkt),
		"expires_in":   int64(p.opts.AccessTokenLifetime / time.Second),
		"id_token":     idToken,
		"scope":        g.scope,
	}
	if rt != "" {
		body["refresh_token"] = rt
	}
	if p.opts.TokenResponse != nil {
		p.opts.TokenResponse(body)
	}
	writeJSON(w, http.StatusOK, body)
}

func tokenType(jkt string) string {
	if jkt != "" {
		return "DPoP"
	}
	return "Bearer"
}

func (p *Provider) handleUserInfo(w http.ResponseWriter, r *http.Request) {
	p.count(func(s *Stats) { s.UserInfo++ })
	if !allowMethods(w, r, http.MethodGet, http.MethodPost) {
		return
	}
	refuse := func(status int, challenge, code, description string) {
		w.Header().Set("WWW-Authenticate", challenge)
		writeError(w, status, code, description)
	}
	inBody := false
	if r.Method == http.MethodPost {
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		if err := r.ParseForm(); err == nil && r.PostForm.Has("access_token") {
			inBody = true
		}
	}
	if r.URL.Query().Has("access_token") || inBody {
		refuse(http.StatusBadRequest, `Bearer realm="devop", error="invalid_request"`, "invalid_request",
			"send the access token in the Authorization header only")
		return
	}
	tok, dpop, ok := resourceToken(r)
	if !ok || (dpop && !p.opts.DPoP) {
		refuse(http.StatusUnauthorized, `Bearer realm="devop"`, "invalid_token", "a Bearer access token is required")
		return
	}
	p.mu.Lock()
	at := p.access[tok]
	var g grant
	var jkt string
	var metadata map[string]any // the client's registration, for signed or encrypted responses
	valid := at != nil && p.now().Before(at.expires)
	if valid {
		g, jkt = at.grant, at.jkt
		if c := p.clients[g.clientID]; c != nil {
			metadata = c.metadata
		}
	}
	p.mu.Unlock()
	if !valid {
		refuse(http.StatusUnauthorized, `Bearer realm="devop", error="invalid_token"`, "invalid_token",
			"the access token is unknown, expired or revoked")
		return
	}
	if jkt != "" || dpop {
		// RFC 9449 §7: a bound token only with the DPoP scheme and a proof
		// of its key that names it.
		p.dpopNonceHeader(w)
		proofJKT, err := p.verifyDPoP(r, tok)
		switch {
		case errors.Is(err, errNeedNonce):
			refuse(http.StatusUnauthorized, `DPoP algs="ES256", error="use_dpop_nonce"`, "use_dpop_nonce", "a DPoP nonce is required")
			return
		case err != nil || proofJKT == "" || !dpop:
			refuse(http.StatusUnauthorized, `DPoP algs="ES256", error="invalid_dpop_proof"`, "invalid_dpop_proof", "the DPoP-bound token needs the DPoP scheme and a valid proof")
			return
		case jkt != "" && proofJKT != jkt:
			refuse(http.StatusUnauthorized, `DPoP algs="ES256", error="invalid_token"`, "invalid_token", "the access token is bound to another key")
			return
		}
	}
	claims := deepCopyMap(p.user)
	claims["sub"] = g.sub
	if p.opts.UserInfo != nil {
		p.opts.UserInfo(claims)
	}
	p.writeUserInfo(w, metadata, g.clientID, claims)
}

// handleRevocation serves the revocation endpoint (RFC 7009). The client
// authenticates as at the token endpoint. Revoking a refresh token revokes
// its grant: the access tokens issued with it too (§2.1). Unknown tokens,
// and tokens of other clients, are answered 200 and left alone (§2.2).
func (p *Provider) handleRevocation(w http.ResponseWriter, r *http.Request) {
	p.count(func(s *Stats) { s.Revocation++ })
	if r.Method != http.MethodPost {
		w.Header().Set("Allow", http.MethodPost)
		writeError(w, http.StatusMethodNotAllowed, "invalid_request", "use POST at the revocation endpoint")
		return
	}
	status := http.StatusOK
	if p.opts.Revocation != nil {
		p.opts.Revocation(&status)
	}
	if status != http.StatusOK {
		writeError(w, status, "server_error", "the revocation endpoint failed (hook)")
		return
	}
	r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
	if err := r.ParseForm(); err != nil {
		writeError(w, http.StatusBadRequest, "invalid_request", "the request body must be application/x-www-form-urlencoded")
		return
	}
	c, basic, terr := p.authenticateClient(r, r.PostForm, "revocation")
	if terr != nil {
		if terr.status == http.StatusUnauthorized && basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="devop"`)
		}
		writeError(w, terr.status, terr.code, terr.description)
		return
	}
	tok := r.PostForm.Get("token")
	if tok == "" {
		writeError(w, http.StatusBadRequest, "invalid_request", "token is required")
		return
	}
	p.mu.Lock()
	if rt := p.refresh[tok]; rt != nil && rt.clientID == c.id {
		delete(p.refresh, tok)
		for k, at := range p.access {
			if at.grant == rt.grant {
				delete(p.access, k)
			}
		}
	}
	if at := p.access[tok]; at != nil && at.clientID == c.id {
		delete(p.access, tok)
	}
	p.mu.Unlock()
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(http.StatusOK)
}
