package oidcrp

import (
	"bytes"
	"context"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"strconv"
	"sync"
	"sync/atomic"
	"time"
)

// Revoker is an optional capability of a CredentialStore, found by type
// assertion: a record of ended sessions shared by every process that uses
// the store. A session ended in one process (a logout, a back-channel
// logout, [RP.EndSessions]) is then refused by all of them within a second,
// and after restarts. Without it, a logout is known only to the process
// that served it.
//
// Keys are opaque strings of at most 64 bytes. Revoke records that the
// sessions named by key ended at time at (sessions of a subject that start
// later are not affected); the entry may be forgotten after until.
// Recording a key again keeps the later of each time. Times are kept to the
// millisecond at least.
//
// Revoked returns the entries recorded after the cursor since ("" for all)
// and the cursor to pass next time. It may return an entry again (such as
// one recorded while the read that returned since ran), never leave one
// out, and may leave out entries past their until; when nothing was
// recorded since, it returns none. It is called twice a second by every
// process, so it must be cheap when nothing changed.
//
// The package storetest checks an implementation against this contract.
type Revoker interface {
	Revoke(ctx context.Context, key string, at, until time.Time) error
	Revoked(ctx context.Context, since string) (entries []Revocation, cursor string, err error)
}

// Revocation is an entry of a [Revoker]'s record.
type Revocation struct {
	Key   string
	At    time.Time // when the sessions ended
	Until time.Time // when the entry may be forgotten
}

// Timing of the revocation record.
const (
	revocationPoll = 500 * time.Millisecond // how often a process reads the shared record
	revocationWait = 2 * time.Second        // bounds one read of the record
	// maxRefreshable bounds a refreshable session without SessionLifetime,
	// and so how long its logout is remembered.
	maxRefreshable = 30 * 24 * time.Hour
	// minRemembered is how long an ended provider session or subject is
	// remembered at least: no ID token-bound session outlives it.
	minRemembered = 24 * time.Hour
)

// revocations is a process's view of the revocation record: every live
// entry in memory, brought up to date from the store every revocationPoll.
// Tenants share one.
type revocations struct {
	store Revoker // nil: this process only
	log   *slog.Logger
	now   func() time.Time

	mu      sync.RWMutex
	entries map[string]Revocation
	cursor  string
	pruned  time.Time

	gen   atomic.Uint64 // bumped whenever entries change
	start sync.Once
	timer atomic.Pointer[time.Timer]
}

func newRevocations(store CredentialStore, log *slog.Logger, now func() time.Time) *revocations {
	v := &revocations{log: log, now: now, entries: map[string]Revocation{}}
	v.store, _ = store.(Revoker)
	return v
}

// watch starts reading the shared record, once: now, before the first
// session is checked (a process started after a logout must not accept
// the session until it has read the record), then every revocationPoll.
func (v *revocations) watch() {
	if v.store == nil {
		return
	}
	v.start.Do(func() {
		v.log.Debug("oidcrp: following the store's revocation record")
		ctx, cancel := context.WithTimeout(context.Background(), revocationWait)
		if err := v.sync(ctx); err != nil {
			v.log.Warn("oidcrp: reading the revocation record failed; will retry", "err", err)
		}
		cancel()
		v.timer.Store(time.AfterFunc(time.Hour, v.poll))
		v.timer.Load().Reset(revocationPoll)
	})
}

func (v *revocations) poll() {
	ctx, cancel := context.WithTimeout(context.Background(), revocationWait)
	if err := v.sync(ctx); err != nil {
		v.log.Warn("oidcrp: reading the revocation record failed; will retry", "err", err)
	}
	cancel()
	v.timer.Load().Reset(revocationPoll)
}

// sync merges what the store recorded since the last sync.
func (v *revocations) sync(ctx context.Context) error {
	v.mu.RLock()
	since := v.cursor
	v.mu.RUnlock()
	entries, cursor, err := v.store.Revoked(ctx, since)
	if err != nil {
		return err
	}
	v.mu.Lock()
	defer v.mu.Unlock()
	changed := v.prune()
	for _, e := range entries {
		changed = v.merge(e) || changed
	}
	v.cursor = cursor
	if changed {
		v.gen.Add(1)
	}
	return nil
}

// merge adds e, keeping the later times of an entry already there. It
// reports whether anything changed. The caller holds v.mu.
func (v *revocations) merge(e Revocation) bool {
	if !e.Until.After(v.now()) {
		return false
	}
	old, ok := v.entries[e.Key]
	if ok && !e.At.After(old.At) && !e.Until.After(old.Until) {
		return false
	}
	if ok {
		e.At, e.Until = later(e.At, old.At), later(e.Until, old.Until)
	}
	v.entries[e.Key] = e
	return true
}

// prune drops expired entries, at most once a minute. The caller holds
// v.mu.
func (v *revocations) prune() bool {
	now := v.now()
	if now.Sub(v.pruned) < time.Minute {
		return false
	}
	v.pruned = now
	n := len(v.entries)
	for k, e := range v.entries {
		if !e.Until.After(now) {
			delete(v.entries, k)
		}
	}
	return len(v.entries) != n
}

// add records e here and in the shared record. It holds here even when the
// store fails, which it reports.
func (v *revocations) add(ctx context.Context, e Revocation) error {
	v.mu.Lock()
	if v.merge(e) {
		v.gen.Add(1)
	}
	v.mu.Unlock()
	if v.store == nil {
		return nil
	}
	if err := v.store.Revoke(ctx, e.Key, e.At, e.Until); err != nil {
		return fmt.Errorf("oidcrp: record the revocation in the store: %w", err)
	}
	return nil
}

// ended reports whether a revocation covers u. It costs two atomic loads
// while nothing changed since u was last looked at.
func (v *revocations) ended(u *User) bool {
	g := v.gen.Load()
	st := u.rev
	if st == nil {
		return false // a session not decoded by this package
	}
	if st.gen.Load() == g+1 {
		return st.ended.Load()
	}
	v.mu.RLock()
	ended := false
	for i, k := range st.keys {
		if e, ok := v.entries[k]; ok && (i != subjectKey || !u.since.After(e.At)) {
			ended = true
			break
		}
	}
	v.mu.RUnlock()
	st.ended.Store(ended)
	st.gen.Store(g + 1) // zero means never looked at
	return ended
}

// revState is what the revocation check remembers of a session: its keys
// and the outcome at the last generation it was checked against.
type revState struct {
	keys  [3]string // by session id, by provider session, by subject
	gen   atomic.Uint64
	ended atomic.Bool
}

// Indexes of revState.keys; only the subject's depends on when the
// session started.
const (
	sessionKey = iota
	providerSessionKey
	subjectKey
)

// revocationKey names what a revocation ends, hashed so that the record
// holds no identifiers of users.
func revocationKey(kind, tenant, issuer, value string) string {
	if value == "" {
		return "" // nothing to match: a session without a provider sid
	}
	h := sha256.New()
	for _, s := range []string{kind, tenant, issuer, value} {
		h.Write([]byte(s))
		h.Write([]byte{0})
	}
	return base64.RawURLEncoding.EncodeToString(h.Sum(nil)[:18])
}

// track gives u the keys the revocation check looks up.
func (rp *RP) track(u *User) *User {
	u.rev = &revState{keys: [3]string{
		revocationKey("sid", rp.tenant, u.Issuer, u.sid),
		revocationKey("op-sid", rp.tenant, u.Issuer, u.opSID),
		revocationKey("sub", rp.tenant, u.Issuer, u.Subject),
	}}
	return u
}

// longest is how long a session of this relying party can last at most.
func (rp *RP) longest() time.Duration {
	switch {
	case rp.cfg.SessionLifetime > 0:
		return rp.cfg.SessionLifetime
	case rp.cfg.KeepTokens:
		return maxRefreshable
	}
	return max(minRemembered, time.Duration(rp.longestSeen.Load()))
}

// endSession ends one session everywhere, until it would have ended anyway.
func (rp *RP) endSessionEverywhere(ctx context.Context, u *User) error {
	until := u.Expiry
	if u.refreshToken != "" && rp.cfg.SessionLifetime == 0 {
		until = u.since.Add(maxRefreshable)
	}
	return rp.revocations.add(ctx, Revocation{Key: revocationKey("sid", rp.tenant, u.Issuer, u.sid), At: rp.now(), Until: later(until, rp.now().Add(time.Minute))})
}

// EndSessions ends, in every process that shares the store, every session
// of subject at this relying party's issuer that started until now, such as
// when an employee leaves. Their next request is not signed in; a later
// login is not affected. Under [Tenants], only the tenant's sessions end.
func (rp *RP) EndSessions(ctx context.Context, subject string) error {
	if subject == "" {
		return errors.New("oidcrp: EndSessions needs a subject")
	}
	now := rp.now()
	err := rp.revocations.add(ctx, Revocation{Key: revocationKey("sub", rp.tenant, rp.cfg.Issuer, subject), At: now, Until: now.Add(rp.longest())})
	rp.log.Info("oidcrp: ended every session of a subject", "sub", subject, "err", err)
	return err
}

// EndSession ends the session of u (from [UserFromContext]) in every
// process that shares the store; the browser's next request is not signed
// in. Unlike the logout path, it leaves the cookie and the provider's session
// alone.
func (rp *RP) EndSession(ctx context.Context, u *User) error {
	if u == nil || u.sid == "" {
		return errors.New("oidcrp: EndSession needs a signed-in user")
	}
	return rp.endSessionEverywhere(ctx, u)
}

// endProviderSession ends every session started in the provider's session
// sid (an ID token's "sid" claim), as back- and front-channel logout ask.
func (rp *RP) endProviderSession(ctx context.Context, sid string) error {
	now := rp.now()
	return rp.revocations.add(ctx, Revocation{Key: revocationKey("op-sid", rp.tenant, rp.cfg.Issuer, sid), At: now, Until: now.Add(rp.longest())})
}

func later(a, b time.Time) time.Time {
	if a.After(b) {
		return a
	}
	return b
}

// The revocation record of MemoryStore and FileStore: one value under
// revocationsKey, changed under the store's lock.
const revocationsKey = "oidcrp:revocations"

type revocationDoc struct {
	Version uint64          `json:"v"`
	Entries []revocationRow `json:"e"`
}

type revocationRow struct {
	Key     string `json:"k"`
	At      int64  `json:"a"` // unix milliseconds
	Until   int64  `json:"u"` // unix milliseconds
	Version uint64 `json:"v"` // of the doc when written
}

type lockingStore interface {
	CredentialStore
	Locker
}

// recordRevocation implements Revoker.Revoke for a store whose values are
// changed under its own lock.
func recordRevocation(ctx context.Context, s lockingStore, key string, at, until time.Time) error {
	if key == "" || len(key) > 64 {
		return fmt.Errorf("oidcrp: revocation key of %d bytes", len(key))
	}
	unlock, err := s.Lock(ctx, revocationsKey)
	if err != nil {
		return err
	}
	defer unlock()
	doc, err := loadRevocations(ctx, s)
	if err != nil {
		return err
	}
	doc.Version++
	now := time.Now().UnixMilli()
	rows := doc.Entries[:0]
	found := false
	for _, r := range doc.Entries {
		if r.Key == key {
			r.At, r.Until, r.Version, found = max(r.At, at.UnixMilli()), max(r.Until, until.UnixMilli()), doc.Version, true
		}
		if r.Until > now {
			rows = append(rows, r)
		}
	}
	if !found && until.UnixMilli() > now {
		rows = append(rows, revocationRow{Key: key, At: at.UnixMilli(), Until: until.UnixMilli(), Version: doc.Version})
	}
	doc.Entries = rows
	b, _ := json.Marshal(doc)
	return s.Save(ctx, revocationsKey, b)
}

// readRevocations implements Revoker.Revoked over the same value. Every
// process calls it twice a second: when the record's version is the
// cursor's, only the version is read, not the entries.
func readRevocations(ctx context.Context, s CredentialStore, since string) ([]Revocation, string, error) {
	b, found, err := loadRevocationBytes(ctx, s)
	if err != nil {
		return nil, since, err
	}
	if v, ok := revocationVersion(b); ok && since != "" && strconv.FormatUint(v, 10) == since {
		return nil, since, nil // nothing changed
	}
	doc, err := decodeRevocations(b, found)
	if err != nil {
		return nil, since, err
	}
	from, _ := strconv.ParseUint(since, 10, 64)
	if from > doc.Version {
		from = 0 // the record was reset: start over
	}
	var out []Revocation
	for _, r := range doc.Entries {
		if r.Version > from {
			out = append(out, Revocation{Key: r.Key, At: time.UnixMilli(r.At), Until: time.UnixMilli(r.Until)})
		}
	}
	return out, strconv.FormatUint(doc.Version, 10), nil
}

func loadRevocations(ctx context.Context, s CredentialStore) (*revocationDoc, error) {
	b, found, err := loadRevocationBytes(ctx, s)
	if err != nil {
		return nil, err
	}
	return decodeRevocations(b, found)
}

func loadRevocationBytes(ctx context.Context, s CredentialStore) ([]byte, bool, error) {
	b, err := s.Load(ctx, revocationsKey)
	switch {
	case errors.Is(err, ErrNotFound):
		return nil, false, nil
	case err != nil:
		return nil, false, err
	}
	return b, true, nil
}

func decodeRevocations(b []byte, found bool) (*revocationDoc, error) {
	var doc revocationDoc
	if !found {
		return &doc, nil
	}
	if err := json.Unmarshal(b, &doc); err != nil {
		return nil, fmt.Errorf("%w: revocation record: %v", ErrCorruptStore, err)
	}
	return &doc, nil
}

// revocationVersion reads the version that starts an encoded revocationDoc
// without decoding the rest.
func revocationVersion(b []byte) (uint64, bool) {
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber()
	if t, err := d.Token(); err != nil || t != json.Delim('{') {
		return 0, false
	}
	if t, err := d.Token(); err != nil || t != "v" {
		return 0, false
	}
	t, err := d.Token()
	n, ok := t.(json.Number)
	if err != nil || !ok {
		return 0, false
	}
	v, err := strconv.ParseUint(string(n), 10, 64)
	return v, err == nil
}

// Revoke records a revocation in the store (see [Revoker]).
func (s *MemoryStore) Revoke(ctx context.Context, key string, at, until time.Time) error {
	return recordRevocation(ctx, s, key, at, until)
}

// Revoked returns the revocations recorded after since (see [Revoker]).
func (s *MemoryStore) Revoked(ctx context.Context, since string) ([]Revocation, string, error) {
	return readRevocations(ctx, s, since)
}

// Revoke records a revocation in the file, under its lock, so that every
// process using the file sees it (see [Revoker]).
func (s *FileStore) Revoke(ctx context.Context, key string, at, until time.Time) error {
	return recordRevocation(ctx, s, key, at, until)
}

// Revoked returns the revocations recorded after since (see [Revoker]).
func (s *FileStore) Revoked(ctx context.Context, since string) ([]Revocation, string, error) {
	return readRevocations(ctx, s, since)
}
