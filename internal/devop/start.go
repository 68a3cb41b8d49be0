package devop

import (
	"context"
	"fmt"
	"net"
	"net/http"
	"strings"
	"sync"
	"time"
)

// loopbackAddr checks that addr is a loopback host and port. It returns the
// address to listen on and the host name to use in the issuer ("" to use the
// listener's address).
func loopbackAddr(addr string) (listen, hostname string, err error) {
	if addr == "" {
		return "127.0.0.1:0", "", nil
	}
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", "", fmt.Errorf("devop: address %q: %w", addr, err)
	}
	if strings.EqualFold(host, "localhost") {
		return net.JoinHostPort("127.0.0.1", port), "localhost", nil
	}
	if ip := net.ParseIP(host); ip == nil || !ip.IsLoopback() {
		return "", "", fmt.Errorf("devop: address %q is not a loopback address; the development provider must not be reachable from the network", addr)
	}
	return addr, "", nil
}

// cleanPrefix normalises an issuer path prefix to "" or "/segment...".
func cleanPrefix(prefix string) (string, error) {
	prefix = strings.TrimRight(prefix, "/")
	if prefix == "" {
		return "", nil
	}
	if !strings.HasPrefix(prefix, "/") {
		prefix = "/" + prefix
	}
	if strings.ContainsAny(prefix, "?#% \t\r\n") || strings.Contains(prefix, "//") {
		return "", fmt.Errorf("devop: invalid path prefix %q", prefix)
	}
	return prefix, nil
}

func start(listenAddr, hostname, prefix string, opts Options) (*Provider, func(), error) {
	ln, err := net.Listen("tcp", listenAddr)
	if err != nil {
		return nil, nil, fmt.Errorf("devop: %w", err)
	}
	hostport := ln.Addr().String()
	if hostname != "" {
		_, port, _ := net.SplitHostPort(hostport)
		hostport = net.JoinHostPort(hostname, port)
	}
	p := New(opts)
	p.SetIssuer("http://" + hostport + prefix)
	srv := &http.Server{
		Handler:           p,
		ReadHeaderTimeout: 10 * time.Second,
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		_ = srv.Serve(ln) // returns http.ErrServerClosed once stopped
	}()
	var once sync.Once
	stop := func() {
		once.Do(func() {
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := srv.Shutdown(ctx); err != nil {
				_ = srv.Close()
			}
			<-done
		})
	}
	return p, stop, nil
}
