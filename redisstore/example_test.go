package redisstore_test

import (
	"log"
	"net/http"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/redisstore"
	"github.com/redis/go-redis/v9"
)

// Every replica of the application registers with the provider through the
// same Redis: the first one registers the client, the others wait for it and
// use it.
func Example() {
	store := redisstore.New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"}), redisstore.Options{})
	rp, err := oidcrp.New(oidcrp.Config{
		Issuer:      "https://login.example.com",
		RedirectURL: "https://app.example.com/auth/callback",
		Store:       store,
	})
	if err != nil {
		log.Fatal(err)
	}
	http.Handle("/", rp.Require(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("hello\n"))
	})))
	log.Fatal(http.ListenAndServe(":8080", nil))
}
