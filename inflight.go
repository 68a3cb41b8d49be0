package oidcrp

import (
	"context"
	"sync"
)

// inflight shares one call of a function per key between concurrent
// callers, as go-oidc's inflight and x/sync's singleflight do. The first
// caller runs the function in its own goroutine; the others wait for its
// result or for their own context, whichever comes first. The zero value is
// ready to use.
type inflight[K comparable, V any] struct {
	mu    sync.Mutex
	calls map[K]*inflightCall[V]
}

type inflightCall[V any] struct {
	done chan struct{}
	v    V
	err  error
}

// do returns fn's result for key, calling fn only when no call for key is in
// flight. first reports whether this caller ran fn, so that a caller can
// report an outcome once. fn receives the first caller's ctx: a caller that
// must not fail the others when it goes away passes a detached one.
func (g *inflight[K, V]) do(ctx context.Context, key K, fn func(context.Context) (V, error)) (v V, err error, first bool) {
	g.mu.Lock()
	if c, ok := g.calls[key]; ok {
		g.mu.Unlock()
		select {
		case <-c.done:
			return c.v, c.err, false
		case <-ctx.Done():
			return v, ctx.Err(), false
		}
	}
	c := &inflightCall[V]{done: make(chan struct{})}
	if g.calls == nil {
		g.calls = map[K]*inflightCall[V]{}
	}
	g.calls[key] = c
	g.mu.Unlock()

	defer func() {
		g.mu.Lock()
		delete(g.calls, key)
		g.mu.Unlock()
		close(c.done)
	}()
	c.v, c.err = fn(ctx)
	return c.v, c.err, true
}
