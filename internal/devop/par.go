package devop

import (
	"net/http"
	"net/url"
	"slices"
	"time"
)

// PARLifetime is how long a request_uri issued by the pushed authorization
// request endpoint stays usable (its expires_in).
const PARLifetime = 60 * time.Second

// parURNPrefix starts every request_uri the provider issues (RFC 9126 §2.2).
const parURNPrefix = "urn:ietf:params:oauth:request_uri:"

// pushedRequest is an authorization request pushed to the PAR endpoint,
// waiting for the browser to bring its request_uri.
type pushedRequest struct {
	clientID string
	params   url.Values
	expires  time.Time
}

// parServed reports whether the PAR endpoint is served.
func (p *Provider) parServed() bool { return p.opts.PAR || p.opts.RequirePAR }

// handlePAR serves the pushed authorization request endpoint (RFC 9126):
// the client authenticates as at the token endpoint, and the authorization
// request parameters it posts are kept under a one-time request_uri.
func (p *Provider) handlePAR(w http.ResponseWriter, r *http.Request) {
	form, parseErr, ok := p.postedForm(w, r, "the pushed authorization request endpoint", func(s *Stats) { s.PAR++ }, &p.lastPARForm, &p.lastPARHeader)
	if !ok {
		return
	}

	status, body := http.StatusCreated, map[string]any{}
	var terr *tokenError
	var c client
	var basic bool
	if parseErr != nil {
		terr = &tokenError{http.StatusBadRequest, "invalid_request", "the request body must be application/x-www-form-urlencoded"}
	}
	for k, vs := range form {
		if terr == nil && len(vs) > 1 {
			terr = &tokenError{http.StatusBadRequest, "invalid_request", k + " must not be sent more than once"}
		}
	}
	if terr == nil {
		c, basic, terr = p.authenticateClient(r, form, "par")
	}
	checked := form // the parameters checked: those of the request object, when there is one
	if terr == nil && form.Has("request") && p.requestObjectsServed() {
		inner, err := p.unpackRequestObject(form)
		if err != nil {
			terr = &tokenError{http.StatusBadRequest, "invalid_request_object", err.Error()}
		} else {
			checked = inner // the request object itself is kept, and verified again at the authorization endpoint
		}
	}
	switch {
	case terr != nil:
	case form.Has("request_uri"):
		terr = &tokenError{http.StatusBadRequest, "invalid_request", "request_uri must not be pushed (RFC 9126 §2.1)"}
	case checked.Get("client_id") != c.id:
		terr = &tokenError{http.StatusBadRequest, "invalid_request", "client_id must be sent and name the authenticated client"}
	case !slices.Contains(c.redirectURIs, checked.Get("redirect_uri")):
		terr = &tokenError{http.StatusBadRequest, "invalid_request", "redirect_uri is missing or not registered for this client"}
	}
	if terr != nil {
		if terr.status == http.StatusUnauthorized && basic {
			w.Header().Set("WWW-Authenticate", `Basic realm="devop"`)
		}
		status, body = terr.status, errorBody(terr.code, terr.description)
	} else {
		uri := parURNPrefix + randomToken(24)
		params := cloneValues(form)
		params.Del("client_secret")
		params.Del("client_assertion")
		params.Del("client_assertion_type")
		now := p.now()
		p.mu.Lock()
		for k, v := range p.pushed {
			if now.After(v.expires) {
				delete(p.pushed, k)
			}
		}
		p.pushed[uri] = &pushedRequest{clientID: c.id, params: params, expires: now.Add(PARLifetime)}
		p.mu.Unlock()
		body["request_uri"] = uri
		body["expires_in"] = int(PARLifetime / time.Second)
	}
	if p.opts.PushedAuthorization != nil {
		p.opts.PushedAuthorization(&status, body)
	}
	writeJSON(w, status, body)
}

// takePushed returns the parameters pushed under requestURI by clientID, once,
// or a message saying why there are none.
func (p *Provider) takePushed(requestURI, clientID string) (url.Values, string) {
	now := p.now()
	p.mu.Lock()
	defer p.mu.Unlock()
	pr := p.pushed[requestURI]
	delete(p.pushed, requestURI)
	switch {
	case pr == nil:
		return nil, "The request_uri is unknown or was used already."
	case now.After(pr.expires):
		return nil, "The request_uri has expired."
	case pr.clientID != clientID:
		return nil, "The request_uri was pushed by another client than the client_id of the request."
	}
	return pr.params, ""
}

// LastPARRequest returns the form and the headers of the most recent
// request to the pushed authorization request endpoint, or nils if there
// was none.
func (p *Provider) LastPARRequest() (form url.Values, header http.Header) {
	p.mu.Lock()
	defer p.mu.Unlock()
	return cloneValues(p.lastPARForm), p.lastPARHeader.Clone()
}
