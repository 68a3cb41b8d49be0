package main

import (
	"crypto/rand"
	"encoding/hex"
	"net/http"
	"os"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
	"github.com/redis/go-redis/v9"
)

// redisAddr returns the Redis server of the test script (OIDCRP_REDIS_ADDR);
// without it the test is skipped, or fails under CI.
func redisAddr(t *testing.T) string {
	t.Helper()
	addr := os.Getenv("OIDCRP_REDIS_ADDR")
	if addr == "" {
		const msg = "OIDCRP_REDIS_ADDR is not set: run ./scripts/test.sh, which starts redis-server " +
			"(or export the line printed by scripts/redis.sh start)"
		if os.Getenv("CI") != "" {
			t.Fatal(msg)
		}
		t.Skip(msg)
	}
	return addr
}

// TestReplicasRegisterOnce starts three proxies sharing Redis, as three
// replicas behind one public URL: the provider sees one registration, and a
// session started at one replica is accepted by the others.
func TestReplicasRegisterOnce(t *testing.T) {
	addr := redisAddr(t)
	var b [8]byte
	rand.Read(b[:])
	storeKey := "oidcrp-proxy-test:" + hex.EncodeToString(b[:]) + ":client"
	t.Cleanup(func() {
		c := redis.NewClient(&redis.Options{Addr: addr})
		defer c.Close()
		keys, _ := c.Keys(t.Context(), "*"+storeKey+"*").Result()
		if len(keys) > 0 {
			c.Del(t.Context(), keys...)
		}
	})
	// A slow registration: the replicas start while the first one's is in
	// flight, and must wait for it rather than register their own.
	op, stop, err := devop.Start("127.0.0.1:0", "", devop.Options{
		Registration: func(*int, map[string]any) { time.Sleep(500 * time.Millisecond) },
	})
	if err != nil {
		t.Fatal(err)
	}
	defer stop()
	up := newUpstream(t)

	public := "http://" + freeAddr(t) // the load balancer's URL, as browsers see it
	replicas := make([]*proc, 3)
	for i := range replicas {
		replicas[i] = startProxy(t, "-issuer", op.Issuer(), "-upstream", up.URL, "-public-url", public,
			"-store", "redis://"+addr+"/0", "-store-key", storeKey)
	}
	for _, r := range replicas {
		resp, err := http.Get(r.base + "/ready")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != http.StatusOK {
			t.Fatalf("%s/ready: %d", r.base, resp.StatusCode)
		}
	}
	if n := op.Stats().Registration; n != 1 {
		t.Errorf("three replicas made %d registrations, want 1", n)
	}
	if clients := op.Clients(); len(clients) != 1 {
		t.Errorf("the provider has %d clients, want 1", len(clients))
	}

	// Sign in at the first replica and use the others (the browser's
	// cookies are per host, so they go to every replica on 127.0.0.1).
	br := newBrowser(t)
	// The callback goes to the public URL, which no one serves here: finish
	// the sign-in through replica 1 instead, as the load balancer would.
	br.c.CheckRedirect = func(req *http.Request, via []*http.Request) error {
		if "http://"+req.URL.Host == public {
			req.URL.Host = replicas[1].base[len("http://"):]
		}
		return nil
	}
	resp, body := br.signIn(replicas[0].base + "/x")
	if e := decodeEcho(t, resp, body); e.Headers.Get("X-Forwarded-User") != "demo-user" {
		t.Fatalf("after sign-in the upstream got %q", e.Headers.Get("X-Forwarded-User"))
	}
	for _, r := range replicas {
		resp, body := br.get(r.base+"/y", "application/json")
		if e := decodeEcho(t, resp, body); e.Headers.Get("X-Forwarded-User") != "demo-user" {
			t.Errorf("%s: the upstream got %q", r.base, e.Headers.Get("X-Forwarded-User"))
		}
	}
	if n := op.Stats().Registration; n != 1 {
		t.Errorf("after sign-in: %d registrations, want 1", n)
	}
}
