package devop

import (
	"net/http"
	"net/url"
	"slices"
	"strconv"
)

func (p *Provider) handleEndSession(w http.ResponseWriter, r *http.Request) {
	p.count(func(s *Stats) { s.EndSession++ })
	var q url.Values
	switch r.Method {
	case http.MethodGet:
		q = r.URL.Query()
	case http.MethodPost:
		r.Body = http.MaxBytesReader(w, r.Body, maxBodyBytes)
		if err := r.ParseForm(); err != nil {
			errorPage(w, http.StatusBadRequest, "The logout request could not be read.")
			return
		}
		q = r.PostForm
	default:
		w.Header().Set("Allow", "GET, POST")
		errorPage(w, http.StatusMethodNotAllowed, "The end-session endpoint accepts GET and POST only.")
		return
	}
	clientID := q.Get("client_id")
	postLogout := q.Get("post_logout_redirect_uri")
	if hint := q.Get("id_token_hint"); hint != "" {
		claims, err := p.verifyOwnToken(hint)
		if err != nil {
			errorPage(w, http.StatusBadRequest, "The id_token_hint was not issued by this provider: "+err.Error()+".")
			return
		}
		aud := audiences(claims["aud"])
		switch {
		case clientID != "" && !slices.Contains(aud, clientID):
			errorPage(w, http.StatusBadRequest, "The client_id does not match the audience of the id_token_hint.")
			return
		case clientID == "" && len(aud) == 1:
			clientID = aud[0]
		}
	}
	if postLogout != "" {
		if clientID == "" {
			errorPage(w, http.StatusBadRequest, "A post_logout_redirect_uri needs an id_token_hint or a client_id.")
			return
		}
		p.mu.Lock()
		c := p.clients[clientID]
		ok := c != nil && slices.Contains(c.postLogoutURIs, postLogout)
		p.mu.Unlock()
		if !ok {
			errorPage(w, http.StatusBadRequest, "The post_logout_redirect_uri "+strconv.Quote(postLogout)+" is not registered for this client.")
			return
		}
	}

	if ck, err := r.Cookie(SSOCookieName); err == nil {
		p.mu.Lock()
		delete(p.sessions, ck.Value)
		p.mu.Unlock()
	}
	http.SetCookie(w, p.ssoCookie("", -1))

	if postLogout != "" {
		params := url.Values{}
		if state := q.Get("state"); state != "" {
			params.Set("state", state)
		}
		redirect(w, r, appendQuery(postLogout, params))
		return
	}
	writePage(w, http.StatusOK, page{Title: "Signed out", Message: "You have been signed out of the development provider."})
}

// audiences returns the aud claim as a list.
func audiences(v any) []string {
	switch v := v.(type) {
	case string:
		return []string{v}
	case []any:
		var out []string
		for _, e := range v {
			if s, ok := e.(string); ok {
				out = append(out, s)
			}
		}
		return out
	}
	return nil
}
