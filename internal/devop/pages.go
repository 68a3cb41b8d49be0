package devop

import (
	"bytes"
	"html/template"
	"net/http"
)

// page is the content of one of the provider's small HTML pages.
type page struct {
	Title   string
	Message string
	Login   *loginForm
	Details []detail
	Warning string
}

// loginForm is the one-click sign-in form.
type loginForm struct {
	Action    string
	RequestID string
	User      string
}

type detail struct{ Name, Value string }

var pageTemplate = template.Must(template.New("page").Parse(`<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<meta name="robots" content="noindex">
<title>{{.Title}} · devop</title>
<style>
body { font-family: system-ui, sans-serif; max-width: 36rem; margin: 2rem auto; padding: 0 1rem; color: #222; }
.warning { background: #fff3cd; border: 1px solid #d4a200; padding: .5rem 1rem; }
dt { font-weight: bold; } dd { margin: 0 0 .5rem 0; word-break: break-all; }
button { font-size: 1rem; padding: .4rem 1rem; margin-right: .5rem; }
</style>
</head>
<body>
<p class="warning"><strong>{{.Warning}}.</strong> This in-memory OpenID Provider lets anyone sign in as its demo user.</p>
<h1>{{.Title}}</h1>
{{with .Message}}<p>{{.}}</p>{{end}}
{{with .Login}}<form method="post" action="{{.Action}}">
<input type="hidden" name="request_id" value="{{.RequestID}}">
<button type="submit" name="action" value="login">Sign in as {{.User}}</button>
<button type="submit" name="action" value="deny">Cancel</button>
</form>{{end}}
{{with .Details}}<dl>{{range .}}<dt>{{.Name}}</dt><dd>{{.Value}}</dd>{{end}}</dl>{{end}}
</body>
</html>
`))

// writePage renders pg. Every page carries the NotForProduction warning.
func writePage(w http.ResponseWriter, status int, pg page) {
	pg.Warning = NotForProduction
	var buf bytes.Buffer
	if err := pageTemplate.Execute(&buf, pg); err != nil {
		http.Error(w, "devop: "+err.Error(), http.StatusInternalServerError)
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/html; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Frame-Options", "DENY")
	h.Set("X-Content-Type-Options", "nosniff")
	h.Set("Content-Security-Policy", "default-src 'none'; style-src 'unsafe-inline'")
	h.Set("Referrer-Policy", "no-referrer")
	w.WriteHeader(status)
	_, _ = w.Write(buf.Bytes())
}

// errorPage shows an error to the end-user. It is used where the user agent
// cannot be redirected back to the client.
func errorPage(w http.ResponseWriter, status int, message string) {
	writePage(w, status, page{Title: "Request refused", Message: message})
}
