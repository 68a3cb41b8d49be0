package main

import (
	"encoding/json"
	"fmt"
	"html/template"
	"net/http"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"weak"

	"github.com/oidcrp/oidcrp"
)

// identity is what the proxy tells the upstream about a signed-in user,
// and the policy's decision. It is immutable once made.
type identity struct {
	Subject           string
	Email             string
	EmailVerified     *bool
	PreferredUsername string
	Groups            []string
	claims            map[string]any

	allowed bool
	why     string // why not allowed, for the user
}

// identities remembers the identity of each session user the library has
// opened. The library keeps an opened session's *User while the session
// lives (and makes a new one when it changes, e.g. on refresh), so decoding
// the claims and deciding once per session keeps both off the path of
// every request. An entry goes when its *User is garbage collected.
type identities struct {
	policy *policy
	m      sync.Map // weak.Pointer[oidcrp.User] → *identity
}

func (c *identities) of(u *oidcrp.User) *identity {
	k := weak.Make(u)
	if id, ok := c.m.Load(k); ok {
		return id.(*identity)
	}
	id := identityOf(u, c.policy.groupsClaim)
	id.allowed, id.why = c.policy.allows(id)
	if _, loaded := c.m.LoadOrStore(k, id); !loaded {
		runtime.AddCleanup(u, func(k weak.Pointer[oidcrp.User]) { c.m.Delete(k) }, k)
	}
	return id
}

// identityOf reads the user's claims.
func identityOf(u *oidcrp.User, groupsClaim string) *identity {
	claims := map[string]any{}
	_ = u.Claims(&claims) // a session whose claims do not decode has none
	id := &identity{Subject: u.Subject, claims: claims}
	id.Email, _ = claims["email"].(string)
	id.PreferredUsername, _ = claims["preferred_username"].(string)
	if v, ok := claims["email_verified"].(bool); ok {
		id.EmailVerified = &v
	}
	id.Groups = claimValues(claims[groupsClaim])
	return id
}

// claimValues returns a claim's values as strings: the items of an array,
// or the value itself.
func claimValues(v any) []string {
	switch v := v.(type) {
	case nil:
		return nil
	case []any:
		var out []string
		for _, item := range v {
			out = append(out, claimValues(item)...)
		}
		return out
	case string:
		return []string{v}
	case bool:
		return []string{strconv.FormatBool(v)}
	case float64:
		return []string{strconv.FormatFloat(v, 'f', -1, 64)}
	}
	b, _ := json.Marshal(v)
	return []string{string(b)}
}

// policy decides which signed-in users may pass. Each configured kind of
// rule must be met: the email (its domain or the address), a group, a claim
// value. With no rules, every signed-in user passes.
type policy struct {
	domains     []string            // "example.com", or ".example.com" for its subdomains
	emails      map[string]bool     // lower case
	groups      map[string]bool     // exact
	claims      map[string][]string // claim name: accepted values
	groupsClaim string
}

func (p *policy) parse(domains, emails, groups, claims []string) error {
	for _, d := range domains {
		d = strings.ToLower(strings.TrimPrefix(d, "@"))
		if d == "" || d == "." || strings.ContainsAny(d, "@ ") {
			return fmt.Errorf("-allowed-email-domains entry %q is not a domain", d)
		}
		p.domains = append(p.domains, d)
	}
	for _, e := range emails {
		if !strings.Contains(e, "@") {
			return fmt.Errorf("-allowed-emails entry %q is not an email address", e)
		}
		if p.emails == nil {
			p.emails = map[string]bool{}
		}
		p.emails[strings.ToLower(e)] = true
	}
	for _, g := range groups {
		if p.groups == nil {
			p.groups = map[string]bool{}
		}
		p.groups[g] = true
	}
	for _, c := range claims {
		name, value, ok := strings.Cut(c, "=")
		if !ok || name == "" {
			return fmt.Errorf("-allowed-claims entry %q is not claim=value", c)
		}
		if p.claims == nil {
			p.claims = map[string][]string{}
		}
		p.claims[name] = append(p.claims[name], value)
	}
	return nil
}

// allows reports whether the user may pass and, if not, why, in words for
// the user.
func (p *policy) allows(id *identity) (bool, string) {
	if len(p.domains) > 0 || len(p.emails) > 0 {
		email := strings.ToLower(id.Email)
		switch {
		case email == "":
			return false, "your account has no email address"
		case id.EmailVerified != nil && !*id.EmailVerified:
			return false, "your email address is not verified"
		case !p.emails[email] && !p.domainAllowed(email):
			return false, "your email address is not allowed"
		}
	}
	if len(p.groups) > 0 && !p.inGroup(id.Groups) {
		return false, "you are not in an allowed group"
	}
	if len(p.claims) > 0 && !p.claimAllowed(id.claims) {
		return false, "your account does not have an allowed attribute"
	}
	return true, ""
}

func (p *policy) domainAllowed(email string) bool {
	at := strings.LastIndexByte(email, '@')
	domain := email[at+1:]
	for _, d := range p.domains {
		if d == "*" || d == domain || (strings.HasPrefix(d, ".") && strings.HasSuffix(domain, d)) {
			return true
		}
	}
	return false
}

func (p *policy) inGroup(groups []string) bool {
	for _, g := range groups {
		if p.groups[g] {
			return true
		}
	}
	return false
}

func (p *policy) claimAllowed(claims map[string]any) bool {
	for name, accepted := range p.claims {
		for _, v := range claimValues(claims[name]) {
			for _, a := range accepted {
				if v == a {
					return true
				}
			}
		}
	}
	return false
}

var forbiddenPage = template.Must(template.New("403").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>Access denied</title>
<style>body{font-family:system-ui,sans-serif;max-width:36em;margin:4em auto;padding:0 1em;line-height:1.5}</style></head>
<body><h1>Access denied</h1>
<p>You are signed in as <strong>{{.Who}}</strong>, but {{.Why}}, so this application is not open to you.</p>
<p>Ask its administrators for access, or <a href="{{.SignOut}}">sign out</a> and sign in with another account.</p>
</body></html>
`))

// forbidden answers a signed-in user who is not allowed: a page for
// browsers, JSON for others. It never starts a login, which would only bring
// the same user back.
func forbidden(w http.ResponseWriter, r *http.Request, id *identity, why string) {
	h := w.Header()
	h.Set("Cache-Control", "no-store")
	if !strings.Contains(r.Header.Get("Accept"), "text/html") {
		h.Set("Content-Type", "application/json")
		w.WriteHeader(http.StatusForbidden)
		_ = json.NewEncoder(w).Encode(map[string]string{"error": "access_denied", "error_description": why})
		return
	}
	who := id.Email
	if who == "" {
		who = id.Subject
	}
	h.Set("Content-Type", "text/html; charset=utf-8")
	w.WriteHeader(http.StatusForbidden)
	_ = forbiddenPage.Execute(w, map[string]string{"Who": who, "Why": why, "SignOut": signOutPath})
}
