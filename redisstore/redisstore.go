// Package redisstore is an oidcrp.CredentialStore and oidcrp.Locker kept in
// Redis, so that several replicas of an application share one registered
// client and register it exactly once.
//
//	rp, err := oidcrp.New(oidcrp.Config{
//		Issuer:      "https://login.example.com",
//		RedirectURL: "https://app.example.com/auth/callback",
//		Store: redisstore.New(redis.NewClient(&redis.Options{Addr: "127.0.0.1:6379"}),
//			redisstore.Options{}),
//	})
//
// # Locks are leases
//
// A lock is a lease: a Redis key holding a token unique to one acquisition,
// set with SET NX semantics and a time to live of [Options.LeaseTTL]. While
// the lock is held, the Store renews the lease every LeaseTTL/3, so a live
// holder keeps it as long as it needs; a holder that crashes, or loses Redis,
// loses it LeaseTTL after its last renewal, and a waiting replica takes over.
// Waiters poll Redis every [Options.PollInterval]. Within one Store, callers
// of Lock for the same key queue in process, so that only one of them polls.
//
// Leases are fenced, as oidcrp.Locker requires: while a Store holds the
// lease on a key, its Save and Delete of that key write only if the lease is
// still theirs, checked atomically in Redis by a Lua script, and otherwise
// fail with an error wrapping oidcrp.ErrLockLost. A holder whose lease merely
// expired, without anyone taking the lock since, renews it at its next write
// or renewal and carries on. Save and Delete through a Store that does not
// hold the lease on the key are plain writes: locks are advisory.
//
// # Keys
//
// For a store key k the Store uses three Redis keys, where {k} is k with '%'
// and '}' percent-encoded, wrapped in braces:
//
//	<prefix>{k}:v     the value, a string
//	<prefix>{k}:lock  the lease token, "<generation>:<random>", with a TTL
//	<prefix>{k}:gen   a hash: "gen", the number of acquisitions so far (the
//	                  fencing number), and "holder", the current token
//
// The braces make the three keys a Redis Cluster hash tag, so the scripts
// that touch several of them work with a redis.ClusterClient too (provided
// Prefix contains no braces). Use a Redis without key eviction
// (maxmemory-policy noeviction): an evicted value is a lost registration.
//
// # Revocations
//
// Store implements oidcrp.Revoker: a logout at one replica is refused at
// every other within the relying party's poll interval (half a second). The
// record is a version counter, a hash of entries and two sorted sets (by
// version and by expiry) under the keys <prefix>{revocations}:meta,
// :entries, :order and :expiry, written and read by one Lua script each, so
// it is consistent under any number of writing replicas, needs no lock, and
// a read of an unchanged record is one round trip that returns the version
// only. Every write removes expired entries, so the record holds only the
// sessions a logout still has to refuse.
//
// # Contexts
//
// Every method checks its context before talking to Redis, and Lock stops
// waiting when it is done. A command already sent is bounded by the client's
// own timeouts, unless the client was created with ContextTimeoutEnabled,
// in which case the context's deadline bounds it too.
package redisstore

import (
	"context"
	"crypto/rand"
	"encoding/hex"
	"errors"
	"fmt"
	"log/slog"
	mathrand "math/rand/v2"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/oidcrp/oidcrp"
	"github.com/oidcrp/oidcrp/internal/keyedmutex"
	"github.com/redis/go-redis/v9"
)

// Defaults and limits of Options.
const (
	// DefaultPrefix is the key prefix used when Options.Prefix is empty.
	DefaultPrefix = "oidcrp:"
	// DefaultLeaseTTL is the lease duration used when Options.LeaseTTL is zero.
	DefaultLeaseTTL = 15 * time.Second
	// DefaultPollInterval is the polling period used when
	// Options.PollInterval is not positive.
	DefaultPollInterval = 50 * time.Millisecond
	// MinLeaseTTL is the shortest lease: shorter Options.LeaseTTL values are
	// raised to it.
	MinLeaseTTL = 100 * time.Millisecond
)

// releaseTimeout bounds the Redis call that releases a lease at unlock; a
// lease that could not be released expires after its TTL anyway.
const releaseTimeout = 5 * time.Second

// Options configures a Store. The zero value uses the defaults.
type Options struct {
	// Prefix starts the name of every Redis key the Store uses, so that
	// several applications can share one Redis database. Default
	// DefaultPrefix, "oidcrp:". Stores sharing credentials and locks must
	// use the same Prefix. It should contain no '{' or '}', which would
	// change the keys' Redis Cluster hash slot.
	Prefix string

	// LeaseTTL is how long a lock outlives its holder's last renewal: a
	// crashed holder's lock passes to a waiting replica after at most this
	// long. It should be well above the round-trip time to Redis. Default
	// DefaultLeaseTTL, 15 seconds; values below MinLeaseTTL are raised to it.
	LeaseTTL time.Duration

	// PollInterval is how often Lock tries again to take a lock that another
	// Store holds (with ±25% jitter). Default DefaultPollInterval, 50
	// milliseconds.
	PollInterval time.Duration

	// Logger, when set, receives the lines go-redis logs by itself, such as
	// "failed to dial after 5 attempts", as warnings with the attribute
	// logger=go-redis, instead of the unstructured lines go-redis writes to
	// stderr by default. Pass the application's logger (oidcrp's
	// Config.Logger) to keep one log format.
	//
	// go-redis has one logger for the whole process, not one per client:
	// New installs it with redis.SetLogger, so it receives the lines of
	// every go-redis client in the process, and the last Store created with
	// a Logger wins. To choose otherwise, leave Logger nil and call
	// redis.SetLogger(RedisLogger(l)) yourself.
	Logger *slog.Logger
}

// Store is an oidcrp.CredentialStore and oidcrp.Locker kept in Redis. Create
// it with New; it is safe for concurrent use. Several Store values, in one
// process or many, share values and locks when they use the same Redis and
// the same Prefix.
type Store struct {
	client redis.UniversalClient
	prefix string
	ttl    time.Duration
	poll   time.Duration

	local keyedmutex.Mutex // one Lock caller per key and Store talks to Redis

	mu     sync.Mutex
	leases map[string]*lease // by store key: the lease this Store holds

	stalled atomic.Bool // tests: stop renewing leases, as a frozen process would
}

// Interface checks.
var (
	_ oidcrp.CredentialStore = (*Store)(nil)
	_ oidcrp.Locker          = (*Store)(nil)
	_ oidcrp.Revoker         = (*Store)(nil)
)

// lease is one acquisition of a lock by a Store.
type lease struct {
	token    string        // "<generation>:<random hex>"
	lost     atomic.Bool   // another holder took the lock since
	released atomic.Bool   // unlock has begun
	stop     chan struct{} // closed at unlock: stops renewal
	done     chan struct{} // closed when renewal has stopped
}

// New returns a Store keeping its values and locks in the Redis that client
// reaches: a *redis.Client, *redis.ClusterClient, *redis.Ring or failover
// client. The Store does not close client. New does no I/O. It panics if
// client is nil.
func New(client redis.UniversalClient, opts Options) *Store {
	if client == nil {
		panic("redisstore: New called with a nil client")
	}
	if opts.Prefix == "" {
		opts.Prefix = DefaultPrefix
	}
	if opts.LeaseTTL == 0 {
		opts.LeaseTTL = DefaultLeaseTTL
	}
	opts.LeaseTTL = max(opts.LeaseTTL, MinLeaseTTL).Truncate(time.Millisecond)
	if opts.PollInterval <= 0 {
		opts.PollInterval = DefaultPollInterval
	}
	if opts.Logger != nil {
		redis.SetLogger(RedisLogger(opts.Logger))
	}
	return &Store{
		client: client,
		prefix: opts.Prefix,
		ttl:    opts.LeaseTTL,
		poll:   opts.PollInterval,
		leases: make(map[string]*lease),
	}
}

// String describes the store by its key prefix.
func (s *Store) String() string {
	return "redisstore.Store(" + s.prefix + ")"
}

// Load returns the value stored under key, or an error wrapping
// oidcrp.ErrNotFound.
func (s *Store) Load(ctx context.Context, key string) ([]byte, error) {
	if err := s.check(ctx, "load", key); err != nil {
		return nil, err
	}
	v, err := s.client.Get(ctx, s.name(key, "v")).Bytes()
	if errors.Is(err, redis.Nil) {
		return nil, fmt.Errorf("oidcrp: redis store: load %q: %w", key, oidcrp.ErrNotFound)
	}
	if err != nil {
		return nil, s.fail(ctx, "load", key, err)
	}
	return v, nil
}

// Save stores value under key, replacing any previous value. While this
// Store holds the lock named key, Save writes only if the lease is still its
// own, and otherwise returns an error wrapping oidcrp.ErrLockLost.
func (s *Store) Save(ctx context.Context, key string, value []byte) error {
	if err := s.check(ctx, "save", key); err != nil {
		return err
	}
	if value == nil {
		value = []byte{}
	}
	plain := func() error {
		if err := s.client.Set(ctx, s.name(key, "v"), value, 0).Err(); err != nil {
			return s.fail(ctx, "save", key, err)
		}
		return nil
	}
	if l := s.lease(key); l != nil {
		return s.fenced(ctx, "save", key, l, fencedSetScript, plain, value)
	}
	return plain()
}

// Delete removes the value stored under key, if any. While this Store holds
// the lock named key, Delete removes it only if the lease is still its own,
// and otherwise returns an error wrapping oidcrp.ErrLockLost.
func (s *Store) Delete(ctx context.Context, key string) error {
	if err := s.check(ctx, "delete", key); err != nil {
		return err
	}
	plain := func() error {
		if err := s.client.Del(ctx, s.name(key, "v")).Err(); err != nil {
			return s.fail(ctx, "delete", key, err)
		}
		return nil
	}
	if l := s.lease(key); l != nil {
		return s.fenced(ctx, "delete", key, l, fencedDelScript, plain)
	}
	return plain()
}

// Lock takes the lock named key, waiting until no other holder has it or
// ctx is done, and keeps renewing its lease until unlock is called. Calling
// unlock more than once is harmless. An error from Redis while waiting ends
// the wait with that error.
//
// Callers of Lock on the same Store wait in process for each other: if a
// holder's lease is lost (to a holder through another Store), the next
// caller through this Store still waits for its unlock.
func (s *Store) Lock(ctx context.Context, key string) (unlock func(), err error) {
	if err := s.check(ctx, "lock", key); err != nil {
		return nil, err
	}
	unlockLocal, err := s.local.Lock(ctx, key)
	if err != nil {
		return nil, fmt.Errorf("oidcrp: redis store: lock %q: %w", key, err)
	}
	l, err := s.acquire(ctx, key)
	if err != nil {
		unlockLocal()
		return nil, err
	}
	s.mu.Lock()
	s.leases[key] = l
	s.mu.Unlock()
	go s.renew(key, l)

	var once sync.Once
	return func() {
		once.Do(func() {
			close(l.stop)
			<-l.done
			l.released.Store(true)
			ctx, cancel := context.WithTimeout(context.Background(), min(releaseTimeout, s.ttl))
			// An error leaves the lease to expire after its TTL.
			_ = releaseScript.Run(ctx, s.client, s.lockKeys(key), l.token).Err()
			cancel()
			s.mu.Lock()
			if s.leases[key] == l {
				delete(s.leases, key)
			}
			s.mu.Unlock()
			unlockLocal()
		})
	}, nil
}

// acquire polls Redis until it takes the lease on key or ctx is done.
func (s *Store) acquire(ctx context.Context, key string) (*lease, error) {
	var timer *time.Timer
	for {
		var nonce [16]byte
		rand.Read(nonce[:])
		token, err := acquireScript.Run(ctx, s.client, s.lockKeys(key), hex.EncodeToString(nonce[:]), s.ttl.Milliseconds()).Text()
		if err == nil {
			return &lease{token: token, stop: make(chan struct{}), done: make(chan struct{})}, nil
		}
		if !errors.Is(err, redis.Nil) {
			return nil, s.fail(ctx, "lock", key, err)
		}
		// Held by someone else: wait and try again.
		wait := s.poll*3/4 + mathrand.N(s.poll/2+1)
		if timer == nil {
			timer = time.NewTimer(wait)
			defer timer.Stop()
		} else {
			timer.Reset(wait)
		}
		select {
		case <-timer.C:
		case <-ctx.Done():
			return nil, fmt.Errorf("oidcrp: redis store: lock %q: %w", key, ctx.Err())
		}
	}
}

// renew extends the lease l on key every TTL/3 until unlock, and records
// whether it was lost to another holder.
func (s *Store) renew(key string, l *lease) {
	defer close(l.done)
	tick := time.NewTicker(s.ttl / 3)
	defer tick.Stop()
	for {
		select {
		case <-l.stop:
			return
		case <-tick.C:
		}
		if s.stalled.Load() {
			return
		}
		ctx, cancel := context.WithTimeout(context.Background(), s.ttl/3)
		held, err := renewScript.Run(ctx, s.client, s.lockKeys(key), l.token, s.ttl.Milliseconds()).Int()
		cancel()
		// On an error, try again at the next tick: the lease may outlive a
		// short outage, and writes check it in Redis anyway.
		if err == nil && held == 0 {
			l.lost.Store(true)
			return
		}
	}
}

// fenced runs script, a conditional write of key under lease l. If the
// lease has been lost, it returns an error wrapping oidcrp.ErrLockLost,
// unless unlock released it meanwhile: then it writes unconditionally with
// plain, as for a Store that holds no lease.
func (s *Store) fenced(ctx context.Context, op, key string, l *lease, script *redis.Script, plain func() error, args ...any) error {
	if !l.lost.Load() {
		args = append([]any{l.token, s.ttl.Milliseconds()}, args...)
		held, err := script.Run(ctx, s.client, s.dataKeys(key), args...).Int()
		if err != nil {
			return s.fail(ctx, op, key, err)
		}
		if held == 1 {
			return nil
		}
	}
	if l.released.Load() {
		return plain()
	}
	l.lost.Store(true)
	return fmt.Errorf("oidcrp: redis store: %s %q: lease lost: %w", op, key, oidcrp.ErrLockLost)
}

// lease returns the lease this Store holds on key, or nil.
func (s *Store) lease(key string) *lease {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.leases[key]
}

// check reports whether ctx and key allow an operation.
func (s *Store) check(ctx context.Context, op, key string) error {
	if err := ctx.Err(); err != nil {
		return fmt.Errorf("oidcrp: redis store: %s %q: %w", op, key, err)
	}
	if key == "" {
		return fmt.Errorf("oidcrp: redis store: %s: empty key", op)
	}
	return nil
}

// fail wraps err, a failed Redis call for op on key. If ctx is done, the
// error also wraps ctx.Err().
func (s *Store) fail(ctx context.Context, op, key string, err error) error {
	if cerr := ctx.Err(); cerr != nil && !errors.Is(err, cerr) {
		return fmt.Errorf("oidcrp: redis store: %s %q: %w: %w", op, key, cerr, err)
	}
	return fmt.Errorf("oidcrp: redis store: %s %q: %w", op, key, err)
}

// keyEscaper percent-encodes the characters that would end a Redis Cluster
// hash tag early or make the encoding ambiguous.
var keyEscaper = strings.NewReplacer("%", "%25", "}", "%7D")

// name returns the Redis key of the given kind ("v", "lock" or "gen") for
// the store key key.
func (s *Store) name(key, kind string) string {
	return s.prefix + "{" + keyEscaper.Replace(key) + "}:" + kind
}

// lockKeys returns the KEYS of the lease scripts.
func (s *Store) lockKeys(key string) []string {
	return []string{s.name(key, "lock"), s.name(key, "gen")}
}

// dataKeys returns the KEYS of the fenced write scripts.
func (s *Store) dataKeys(key string) []string {
	return []string{s.name(key, "lock"), s.name(key, "gen"), s.name(key, "v")}
}

// Lua scripts. KEYS[1] is the lock, KEYS[2] the generation hash, KEYS[3]
// the value. ARGV[1] is a lease token (a nonce for acquire), ARGV[2] the
// lease TTL in milliseconds.
var (
	// acquireScript takes a free lock with a new token "<gen>:<nonce>" and
	// returns the token, or nil if the lock is taken.
	acquireScript = redis.NewScript(`
if redis.call('EXISTS', KEYS[1]) == 1 then return false end
local tok = redis.call('HINCRBY', KEYS[2], 'gen', 1) .. ':' .. ARGV[1]
redis.call('SET', KEYS[1], tok, 'PX', ARGV[2])
redis.call('HSET', KEYS[2], 'holder', tok)
return tok
`)

	// renewScript extends the lease and returns 1 if it is still ours, else 0.
	renewScript = redis.NewScript(heldLua + `
if not held() then return 0 end
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
`)

	// fencedSetScript sets the value to ARGV[3] and returns 1 if the lease is
	// still ours, else 0.
	fencedSetScript = redis.NewScript(heldLua + `
if not held() then return 0 end
redis.call('SET', KEYS[3], ARGV[3])
return 1
`)

	// fencedDelScript deletes the value and returns 1 if the lease is still
	// ours, else 0.
	fencedDelScript = redis.NewScript(heldLua + `
if not held() then return 0 end
redis.call('DEL', KEYS[3])
return 1
`)

	// releaseScript deletes the lock if it is still ours and forgets us as
	// its holder.
	releaseScript = redis.NewScript(`
if redis.call('GET', KEYS[1]) == ARGV[1] then redis.call('DEL', KEYS[1]) end
if redis.call('HGET', KEYS[2], 'holder') == ARGV[1] then redis.call('HDEL', KEYS[2], 'holder') end
return 1
`)
)

// heldLua defines held(), which reports whether the lease with token
// ARGV[1] is still ours: the lock holds our token, or it expired and nobody
// has taken it since, in which case held() takes it again for ARGV[2] ms.
const heldLua = `
local function held()
  local cur = redis.call('GET', KEYS[1])
  if cur == ARGV[1] then return true end
  if cur == false and redis.call('HGET', KEYS[2], 'holder') == ARGV[1] then
    redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
    return true
  end
  return false
end
`
