package oidcrp

import (
	"context"
	"crypto/rand"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// Timing of saving credentials the store refused.
const (
	flushEvery    = 5 * time.Second // retry at most this often on demand
	flushMaxDelay = time.Minute     // in the background, backing off from flushEvery to this
)

// durability is the part of the lifecycle that makes sure an issued client
// is not lost when the store fails around a registration:
//
//   - before registering, an intent is written to the store, which also
//     proves the store accepts a write of about the size of the credentials;
//     if it does not, nothing is registered;
//   - credentials the store refused afterwards are held in memory and saved
//     as soon as the store accepts writes again;
//   - an intent that a previous process left without a stored result is a
//     registration lost to a crash: counted in Status and logged once.
type durability struct {
	pending atomic.Pointer[credentials] // in use but not stored

	mu       sync.Mutex // guards the fields below
	next     time.Time  // no on-demand save before then
	delay    time.Duration
	timer    *time.Timer
	intent   string // ID of the intent this process recorded and has not cleared
	orphaned int    // registrations found lost
}

// intentRecord is stored under intentKey while a registration is under way.
type intentRecord struct {
	ID  string `json:"id"`
	At  int64  `json:"at"` // unix seconds, as credentials' registered_at
	Pad string `json:"pad,omitempty"`
}

func (l *lifecycle) intentKey() string { return l.cfg.StoreKey + "#intent" }

// intend records in the store that a registration is about to start, after
// reviewing any intent a previous process left there. The record is about
// the size of the credentials to come (est), so it also checks that the
// store can keep them: an error means nothing must be registered. The
// returned function clears the record if the registration fails.
func (l *lifecycle) intend(ctx context.Context, want ClientMetadata, fp string) (abandon func(), err error) {
	_, locked := l.cfg.Store.(Locker) // renew runs under the store's lock, if it has one
	l.reviewIntent(ctx, locked)
	est, _ := encodeCredentials(&credentials{Issuer: l.cfg.Issuer, Metadata: want, Fingerprint: fp, RegisteredAt: l.now()})
	rec := intentRecord{ID: rand.Text(), At: l.now().Unix()}
	rec.Pad = strings.Repeat("x", max(len(est)+512, 1024)) // id, secret, registration token and URI to come
	b, _ := json.Marshal(rec)
	if err := l.cfg.Store.Save(ctx, l.intentKey(), b); err != nil {
		l.log.Error("oidcrp: the credential store cannot be written; not registering a client it could not keep", "key", l.intentKey(), "err", err)
		return nil, fmt.Errorf("oidcrp: credential store cannot be written: %w", err)
	}
	l.dur.mu.Lock()
	l.dur.intent = rec.ID
	l.dur.mu.Unlock()
	return func() { l.clearIntent(ctx) }, nil
}

// clearIntent removes the intent this process recorded, if the store still
// holds it.
func (l *lifecycle) clearIntent(ctx context.Context) {
	l.dur.mu.Lock()
	id := l.dur.intent
	l.dur.mu.Unlock()
	if id == "" {
		return
	}
	if rec, err := l.loadIntent(ctx); err != nil || rec == nil || rec.ID != id {
		if err == nil {
			l.forgetIntent(id) // replaced by a peer's, or gone
		}
		return
	}
	if err := l.cfg.Store.Delete(ctx, l.intentKey()); err != nil {
		l.log.Warn("oidcrp: clearing the record of a registration failed", "key", l.intentKey(), "err", err)
		return
	}
	l.forgetIntent(id)
}

func (l *lifecycle) forgetIntent(id string) {
	l.dur.mu.Lock()
	if l.dur.intent == id {
		l.dur.intent = ""
	}
	l.dur.mu.Unlock()
}

func (l *lifecycle) loadIntent(ctx context.Context) (*intentRecord, error) {
	b, err := l.cfg.Store.Load(ctx, l.intentKey())
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		return nil, err
	}
	var rec intentRecord
	if err := json.Unmarshal(b, &rec); err != nil {
		return nil, fmt.Errorf("%w: %s: %v", ErrCorruptStore, l.intentKey(), err)
	}
	return &rec, nil
}

// reviewIntent looks for an intent to register left without a result: no
// stored credentials registered since. Such a registration was made by a
// process that stopped before storing it, and its client is left at the
// provider; it is counted, logged and the record removed, so that it is
// counted once. Unless the caller holds the store's lock, a recent intent may be a peer's
// registration under way and is left alone.
func (l *lifecycle) reviewIntent(ctx context.Context, locked bool) {
	rec, err := l.loadIntent(ctx)
	if err != nil || rec == nil {
		return
	}
	l.dur.mu.Lock()
	ours := rec.ID == l.dur.intent
	l.dur.mu.Unlock()
	if ours {
		return
	}
	at := time.Unix(rec.At, 0)
	if !locked && l.now().Sub(at) < setupTimeout {
		return // perhaps a peer registering now
	}
	stored, err := l.load(ctx)
	if err != nil {
		return
	}
	if stored == nil || stored.RegisteredAt.Before(at) {
		l.dur.mu.Lock()
		l.dur.orphaned++
		l.dur.mu.Unlock()
		l.log.Warn("oidcrp: found a client registration without a stored result; the process that made it stopped before storing it, and the client is left at the provider",
			"registration_started_at", at.UTC().Format(time.RFC3339), "key", l.intentKey())
	}
	if err := l.cfg.Store.Delete(ctx, l.intentKey()); err != nil {
		l.log.Warn("oidcrp: clearing the record of a registration failed", "key", l.intentKey(), "err", err)
	}
}

// settled is called once creds are in the store: the intent that preceded
// their registration is cleared, and older credentials held in memory are
// obsolete.
func (l *lifecycle) settled(ctx context.Context, creds *credentials) {
	if p := l.dur.pending.Load(); p != nil && (p == creds || p.ClientID != creds.ClientID || !p.RegisteredAt.After(creds.RegisteredAt)) {
		l.dur.pending.CompareAndSwap(p, nil)
	}
	l.clearIntent(ctx)
}

// hold keeps creds, which the store refused, to save them as soon as it
// accepts writes again: on demand (flushSoon), in the maintenance, and on a
// background timer so that an idle application saves them too.
func (l *lifecycle) hold(creds *credentials) {
	l.dur.pending.Store(creds)
	l.dur.mu.Lock()
	defer l.dur.mu.Unlock()
	l.dur.next = l.now().Add(flushEvery)
	l.dur.delay = flushEvery
	if l.dur.timer == nil {
		l.dur.timer = time.AfterFunc(l.dur.delay, l.flushLater)
	} else {
		l.dur.timer.Reset(l.dur.delay)
	}
}

// flushSoon brings the background save forward, at most once per
// flushEvery, so that a request after an outage saves held credentials at
// once rather than at the timer's backed-off time. It starts no goroutine
// and costs one atomic load when nothing is held.
func (l *lifecycle) flushSoon() {
	if l.dur.pending.Load() == nil {
		return
	}
	l.dur.mu.Lock()
	defer l.dur.mu.Unlock()
	now := l.now()
	if l.dur.timer == nil || now.Before(l.dur.next) {
		return
	}
	l.dur.next = now.Add(flushEvery)
	l.dur.timer.Reset(0)
}

// flushLater is the background timer: it saves held credentials and, while
// the store still refuses them, tries again later, backing off.
func (l *lifecycle) flushLater() {
	l.mu.Lock()
	closed := l.closed
	l.mu.Unlock()
	if closed {
		return
	}
	ctx, cancel := context.WithTimeout(context.Background(), cleanupTimeout)
	l.flush(ctx)
	cancel()
	if l.dur.pending.Load() == nil {
		return
	}
	l.dur.mu.Lock()
	l.dur.delay = min(2*l.dur.delay, flushMaxDelay)
	l.dur.timer.Reset(l.dur.delay)
	l.dur.mu.Unlock()
}

// flush saves the credentials held in memory, unless the process no longer
// uses them, or a peer sharing the store stored a newer client meanwhile:
// then the process adopts that one and deletes its own at the provider.
func (l *lifecycle) flush(ctx context.Context) {
	p := l.dur.pending.Load()
	if p == nil {
		return
	}
	c := l.cur.Load()
	if c == nil || c.creds.ClientID != p.ClientID {
		return // not in use (yet, or any more): a later save settles it
	}
	unlock := l.lockStore(ctx)
	defer unlock()
	stored, err := l.load(ctx)
	if err != nil {
		return
	}
	if stored != nil && stored.ClientID != p.ClientID && stored.Issuer == l.cfg.Issuer &&
		stored.RegisteredAt.After(p.RegisteredAt) && !stored.expiresWithin(l.now(), 0) {
		l.dur.pending.CompareAndSwap(p, nil)
		l.log.Info("oidcrp: a peer stored its client while ours was held in memory; using the peer's", "client_id", stored.ClientID, "replaced", p.ClientID)
		l.adopt(c, stored)
		if p.RegistrationClientURI != "" {
			l.deleteSuperseded(ctx, p)
		}
		l.clearIntent(ctx)
		return
	}
	b, err := encodeCredentials(p)
	if err == nil {
		err = l.cfg.Store.Save(ctx, l.cfg.StoreKey, b)
	}
	if err != nil {
		l.log.Debug("oidcrp: the credential store still refuses the credentials held in memory", "client_id", p.ClientID, "err", err)
		return
	}
	if l.dur.pending.CompareAndSwap(p, nil) {
		l.log.Info("oidcrp: stored client credentials that were held in this process only", "client_id", p.ClientID)
	}
	l.clearIntent(ctx)
}

// orphans fills the durability part of a Status.
func (l *lifecycle) orphans(s *Status) {
	l.dur.mu.Lock()
	s.OrphanedRegistrations = l.dur.orphaned
	l.dur.mu.Unlock()
}

// inheritOrphans carries the count of lost registrations over to the
// lifecycle that replaces from, so that a rebuilt tenant still reports them.
func (l *lifecycle) inheritOrphans(from *lifecycle) {
	from.dur.mu.Lock()
	n := from.dur.orphaned
	from.dur.mu.Unlock()
	l.dur.mu.Lock()
	l.dur.orphaned += n
	l.dur.mu.Unlock()
}
