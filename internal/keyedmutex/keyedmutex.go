// Package keyedmutex provides a set of mutexes named by strings whose Lock
// gives up when its context is done. It serves the stores of this module and
// of its sibling modules (redisstore), which share one implementation.
package keyedmutex

import (
	"context"
	"sync"
)

// Mutex is a set of mutexes named by strings. Unlike sync.Mutex, its Lock
// can be abandoned through a context. Entries exist only while some
// goroutine holds or waits for them. The zero value is ready to use; a Mutex
// must not be copied after first use.
type Mutex struct {
	mu    sync.Mutex
	locks map[string]*entry
}

// entry is one named mutex: a semaphore of capacity one and the number of
// goroutines holding or waiting for it, so that unused entries are dropped.
type entry struct {
	sem  chan struct{}
	refs int
}

// Lock waits until it holds the mutex named key and returns the function
// that releases it, which is safe to call more than once. If ctx is done
// before the mutex is taken (or when Lock is called), Lock returns
// ctx.Err() and holds nothing.
func (m *Mutex) Lock(ctx context.Context, key string) (unlock func(), err error) {
	if err := ctx.Err(); err != nil {
		return nil, err
	}
	m.mu.Lock()
	if m.locks == nil {
		m.locks = make(map[string]*entry)
	}
	e := m.locks[key]
	if e == nil {
		e = &entry{sem: make(chan struct{}, 1)}
		m.locks[key] = e
	}
	e.refs++
	m.mu.Unlock()

	select {
	case e.sem <- struct{}{}:
		if err := ctx.Err(); err != nil { // both were ready: prefer the context
			<-e.sem
			m.release(key, e)
			return nil, err
		}
	case <-ctx.Done():
		m.release(key, e)
		return nil, ctx.Err()
	}
	var once sync.Once
	return func() {
		once.Do(func() {
			<-e.sem
			m.release(key, e)
		})
	}, nil
}

// release drops one reference to e and forgets it once nobody uses it.
func (m *Mutex) release(key string, e *entry) {
	m.mu.Lock()
	defer m.mu.Unlock()
	e.refs--
	if e.refs == 0 {
		delete(m.locks, key)
	}
}

// size returns the number of entries, for tests.
func (m *Mutex) size() int {
	m.mu.Lock()
	defer m.mu.Unlock()
	return len(m.locks)
}
