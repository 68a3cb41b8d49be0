module github.com/oidcrp/oidcrp/cmd/oidcrp-proxy

go 1.26.0

replace (
	github.com/oidcrp/oidcrp => ../../
	github.com/oidcrp/oidcrp/redisstore => ../../redisstore
)

require (
	github.com/oidcrp/oidcrp v0.0.0-00010101000000-000000000000
	github.com/oidcrp/oidcrp/redisstore v0.0.0-00010101000000-000000000000
	github.com/redis/go-redis/v9 v9.23.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/coreos/go-oidc/v3 v3.21.0 // indirect
	github.com/go-jose/go-jose/v4 v4.1.9 // indirect
	github.com/gorilla/securecookie v1.1.2 // indirect
	github.com/gorilla/sessions v1.4.0 // indirect
	go.uber.org/atomic v1.12.0 // indirect
	golang.org/x/oauth2 v0.38.0 // indirect
	golang.org/x/sys v0.48.0 // indirect
)
