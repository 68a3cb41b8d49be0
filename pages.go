package oidcrp

import (
	"bytes"
	"errors"
	"html/template"
	"net/http"
)

// The library's own HTML pages: the default error page and the sign-out
// pages. They are small, load nothing from elsewhere and say what happened
// in words; Config.ErrorHandler replaces the error page.

// pageView is what one page shows.
type pageView struct {
	Title   string // the window title
	Heading string // what happened, in words
	Message string
	Hint    string    // what the user can do now
	Link    *pageLink // where to go next, if anywhere
	Form    string    // when set, the action of a sign-out button
	Reason  string    // a short error code, for support
}

type pageLink struct{ Href, Text string }

var pageTemplate = template.Must(template.New("page").Parse(`<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="referrer" content="no-referrer">
<title>{{.Title}}</title>
<style>
body{font-family:system-ui,sans-serif;line-height:1.5;max-width:34rem;margin:3rem auto;padding:0 1rem;color:#222}
h1{font-size:1.5rem;margin-bottom:.5rem}
a.button,button{display:inline-block;font:inherit;padding:.45rem 1.1rem;border:1px solid #2458b3;border-radius:.3rem;background:#2f6fdf;color:#fff;text-decoration:none;cursor:pointer}
a.quiet{margin-left:1rem}
small{color:#666}
</style></head>
<body><main>
<h1>{{.Heading}}</h1>
{{with .Message}}<p>{{.}}</p>{{end}}
{{with .Hint}}<p>{{.}}</p>{{end}}
{{if .Form}}<form method="post" action="{{.Form}}"><button type="submit">Sign out</button>{{with .Link}}<a class="quiet" href="{{.Href}}">{{.Text}}</a>{{end}}</form>
{{else}}{{with .Link}}<p><a class="button" href="{{.Href}}">{{.Text}}</a></p>{{end}}{{end}}
{{with .Reason}}<p><small>Error code: <code>{{.}}</code></small></p>{{end}}
</main></body></html>
`))

// writePage renders v with status. The page allows no scripts, no outside
// resources and no framing.
func writePage(w http.ResponseWriter, status int, v pageView) {
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, v); err != nil {
		http.Error(w, http.StatusText(http.StatusInternalServerError), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'; frame-ancestors 'none'")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// home is where the pages' links lead. On a protected application it starts
// a new login.
const home = "/"

// errorView describes a failure for a person: a heading that says what
// happened, what to do next, and the reason code that the JSON answer
// carries too.
func errorView(status int, err error) pageView {
	_, reason := publicMessage(status, err)
	v := pageView{Title: "Sign-in problem", Reason: reason, Link: &pageLink{home, "Try again"}}
	var ae *AuthError
	switch {
	case errors.As(err, &ae) && ae.Reason == ReasonProviderError && ae.ErrorCode == "access_denied":
		v.Title, v.Heading = "Sign-in cancelled", "Sign-in was cancelled"
		v.Message = "The sign-in was cancelled at the identity provider, so you are not signed in."
		v.Hint = "You can try again, or close this page."
	case errors.As(err, &ae) && ae.Reason == ReasonProviderError:
		v.Heading = "The identity provider did not sign you in"
		v.Message = "It answered: " + ae.ErrorCode + "."
		v.Hint = "You can try again, or close this page."
	case errors.As(err, &ae) && ae.Reason == ReasonLoginRequired:
		v.Title, v.Heading = "Sign-in required", "Sign-in required"
		v.Message = "You need to sign in to see this page."
		v.Link.Text = "Sign in"
	case errors.As(err, &ae) && ae.Reason == ReasonStateMismatch:
		v.Heading = "This sign-in has expired"
		v.Message = "The sign-in took too long, was already used, or was started in another browser."
		v.Link.Text = "Sign in again"
	case errors.As(err, &ae) && ae.Reason == ReasonBadRequest && (status == http.StatusForbidden || status == http.StatusMethodNotAllowed):
		v.Title, v.Heading = "Request refused", "This request was refused"
		v.Message = "This page does not accept that kind of request. Go back to the application and use its own buttons and links."
		v.Link.Text = "Back to the application"
	case errors.As(err, &ae):
		v.Heading = "Sign-in could not be completed"
		v.Message = "Something went wrong while signing you in."
		v.Hint = "Please try again. If it keeps happening, contact the application's support and quote the error code below."
	case errors.Is(err, ErrUnavailable):
		v.Heading = "Sign-in is temporarily unavailable"
		v.Message = "The identity provider cannot be reached right now."
		v.Hint = "Please try again in a moment."
	default:
		v.Title, v.Heading = "Error", "Something went wrong"
		v.Message = "The application could not handle this request."
		v.Link.Text = "Back to the application"
	}
	return v
}

// signOutView is the page at Config.LogoutPath: a sign-out button for the
// signed-in user u, or word that nobody is signed in.
func signOutView(u *User, action string) pageView {
	if u == nil {
		return pageView{
			Title: "Signed out", Heading: "You are not signed in",
			Link: &pageLink{home, "Back to the application"},
		}
	}
	return pageView{
		Title: "Sign out", Heading: "Sign out",
		Message: "You are signed in as " + displayName(u) + ".",
		Form:    action,
		Link:    &pageLink{home, "Stay signed in"},
	}
}

// signedOutView is the page after sign-out.
func signedOutView() pageView {
	return pageView{
		Title: "Signed out", Heading: "You are signed out",
		Message: "Your session in this application has ended.",
		Link:    &pageLink{home, "Back to the application"},
	}
}

// displayName names u for a person: "Name (email)", or the first of name,
// preferred_username, email and sub that it has.
func displayName(u *User) string {
	var c struct {
		Name              string `json:"name"`
		PreferredUsername string `json:"preferred_username"`
		Email             string `json:"email"`
	}
	_ = u.Claims(&c)
	name := c.Name
	if name == "" {
		name = c.PreferredUsername
	}
	switch {
	case name != "" && c.Email != "" && c.Email != name:
		return name + " (" + c.Email + ")"
	case name != "":
		return name
	case c.Email != "":
		return c.Email
	}
	return u.Subject
}
