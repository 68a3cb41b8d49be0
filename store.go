package oidcrp

import (
	"context"
	"errors"
	"fmt"
	"sync"

	"github.com/oidcrp/oidcrp/internal/keyedmutex"
)

// ErrNotFound is returned by CredentialStore.Load when nothing is stored under the key.
var ErrNotFound = errors.New("oidcrp: not found")

// ErrCorruptStore is wrapped by errors reporting persisted data that cannot
// be decoded, such as a FileStore file that is not valid JSON; match it with
// errors.Is. A FileStore in that state refuses to overwrite its file, so
// that it can be inspected and repaired by hand.
var ErrCorruptStore = errors.New("oidcrp: credential store is corrupt")

// ErrLockLost is wrapped by the error a fencing store returns for a Save or
// Delete made under a lease that has expired and passed to another holder.
var ErrLockLost = errors.New("oidcrp: lock lost to another holder")

// maxValueSize is the largest value a CredentialStore must accept.
const maxValueSize = 1 << 20

// errValueTooLarge is wrapped by the error Save returns for a value larger
// than maxValueSize.
var errValueTooLarge = errors.New("oidcrp: value too large")

// CredentialStore persists small opaque values, such as the credentials of a
// dynamically registered client, under string keys.
//
// Keys are non-empty UTF-8 strings, typically issuer URLs; an implementation
// may reject other keys with an error. Values are at most 1 MiB; an
// implementation may reject larger values with an error. A nil value is
// stored as an empty one.
//
// Implementations are safe for concurrent use and behave as follows:
//
//   - Load returns a nil slice and an error matching ErrNotFound (possibly
//     wrapped, so callers test it with errors.Is) when nothing is stored under
//     key. It returns any other error only for a real failure, such as an
//     unreadable or corrupt backend. The returned slice belongs to the caller.
//   - Save stores a copy of value under key, replacing any previous value
//     atomically: a concurrent Load sees the old or the new value, never a
//     mix of both. The caller may modify value once Save returns.
//   - Delete removes the value stored under key. Deleting an absent key
//     returns nil.
//   - Every method honours ctx: once ctx is done, a method returns an error
//     rather than starting or continuing to wait for work.
//
// The package github.com/oidcrp/oidcrp/storetest checks an implementation
// against this contract.
type CredentialStore interface {
	Load(ctx context.Context, key string) ([]byte, error)
	Save(ctx context.Context, key string, value []byte) error
	Delete(ctx context.Context, key string) error
}

// Locker is an optional capability of a CredentialStore, found by type
// assertion. It lets several goroutines, processes or replicas sharing one
// store agree that exactly one of them registers a client.
//
// Lock blocks until the caller holds the exclusive lock named key or ctx is
// done, in which case it returns an error wrapping ctx.Err(). The returned
// unlock function releases the lock; calling it more than once is harmless.
// Locks are advisory: they only exclude other Lock callers on the same store
// (the same file, the same backend), not Load, Save or Delete, which the lock
// holder may call freely.
//
// A lock is named after the key whose value it protects: the relying party
// locks the key it is about to replace. An implementation whose locks can
// expire (a lease, as a store shared over a network needs so that a crashed
// holder does not block the others forever) must keep a held lock alive until
// unlock, and must fence: once a holder's lease on key has been lost to
// another holder, Save and Delete of key through the old holder's store
// value fail with an error wrapping ErrLockLost, so a paused holder cannot
// overwrite its successor's work. Locks that cannot expire, such as those of
// MemoryStore and FileStore, need no fencing.
type Locker interface {
	Lock(ctx context.Context, key string) (unlock func(), err error)
}

// MemoryStore is a CredentialStore and Locker kept in process memory. Its
// values and locks are shared only by users of the same MemoryStore and are
// lost when the process exits, so it suits tests and single-process programs
// that can register a client again after a restart.
//
// The zero value is an empty store ready to use. A MemoryStore must not be
// copied after first use.
type MemoryStore struct {
	mu      sync.RWMutex
	entries map[string][]byte
	locks   keyedmutex.Mutex
}

// Load returns a copy of the value stored under key, or ErrNotFound.
func (s *MemoryStore) Load(ctx context.Context, key string) ([]byte, error) {
	if err := ctx.Err(); err != nil {
		return nil, fmt.Errorf("oidcrp: memory store: %w", err)
	}
	s.mu.RLock()
	defer s.mu.RUnlock()
	value, ok := s.entries[key]
	if !ok {
		return nil, ErrNotFound
	}
	return append([]byte{}, value...), nil
}

// Save stores a copy of value under key, replacing any previous value.
func (s *MemoryStore) Save(ctx context.Context, key string, value []byte) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("oidcrp: memory store: %w", err)
	}
	if err := checkValueSize(value); err != nil {
		return err
	}
	value = append([]byte{}, value...)
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.entries == nil {
		s.entries = make(map[string][]byte)
	}
	s.entries[key] = value
	return nil
}

// Delete removes the value stored under key, if any.
func (s *MemoryStore) Delete(ctx context.Context, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("oidcrp: memory store: %w", err)
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	delete(s.entries, key)
	return nil
}

// Lock takes the exclusive lock named key, waiting until it is free or ctx
// is done. The lock excludes only other Lock callers on the same MemoryStore.
func (s *MemoryStore) Lock(ctx context.Context, key string) (unlock func(), err error) {
	unlock, err = s.locks.Lock(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("oidcrp: memory store: lock %q: %w", key, err)
	}
	return unlock, nil
}

// checkValueSize reports an error wrapping errValueTooLarge if value exceeds
// maxValueSize.
func checkValueSize(value []byte) error {
	if len(value) > maxValueSize {
		return fmt.Errorf("%w: %d bytes, limit %d", errValueTooLarge, len(value), maxValueSize)
	}
	return nil
}
