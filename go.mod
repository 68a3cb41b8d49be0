module github.com/oidcrp/oidcrp

go 1.26.0

require (
	github.com/coreos/go-oidc/v3 v3.21.0
	github.com/go-jose/go-jose/v4 v4.1.9
	github.com/gorilla/sessions v1.4.0
	golang.org/x/oauth2 v0.38.0
)

require github.com/gorilla/securecookie v1.1.2 // indirect
