package oidcrp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"maps"
	"slices"
	"time"
)

// Replicas sharing a store share one registration, but they may be reached
// at different URLs (a blue/green pair, an internal and an external host
// name), each with its own RedirectURL and PostLogoutRedirectURL. Each
// registering only its own would have them take turns overwriting the
// registration's redirect_uris, breaking each other's logins. Instead each
// replica records in the store the URIs it needs, with when it last said
// so, and the registration carries the union of the URIs of the replicas
// seen within replicaWindow. The fingerprint covers that union, so replicas
// that agree on it make no update, and a URI leaves the registration only
// once its replica has not been seen for the whole window.
const (
	// replicaWindow is how long after a replica was last seen its URIs stay
	// registered. Replicas refresh their record at every setup and every
	// maintenance (checkEvery), so a live replica is never older than that.
	replicaWindow = 6 * time.Hour
	// replicaRefresh is the least time between two writes of a replica's
	// record, so that setups in quick succession write it once.
	replicaRefresh = 10 * time.Minute
)

// replicaURIs is the record kept under urisKey: each redirect URI and
// post-logout redirect URI some replica needs, with when (Unix seconds) a
// replica needing it was last seen.
type replicaURIs struct {
	Version    int              `json:"version"`
	Redirect   map[string]int64 `json:"redirect_uris"`
	PostLogout map[string]int64 `json:"post_logout_redirect_uris"`
}

// urisKey is where the replicas' URIs are recorded.
func (l *lifecycle) urisKey() string { return l.cfg.StoreKey + "#uris" }

// replicaMetadata returns own, the metadata this replica wants registered,
// with its redirect_uris and post_logout_redirect_uris replaced by the
// sorted union of its own and those of the replicas seen within
// replicaWindow. With record, it first records this replica's URIs as seen
// now, under the store's lock on urisKey. A record it cannot read is an
// error: without it, an update could drop a live replica's URIs. A record
// it cannot write is logged and the union of what it read is used.
func (l *lifecycle) replicaMetadata(ctx context.Context, own ClientMetadata, record bool) (ClientMetadata, error) {
	now := l.now()
	var rec *replicaURIs
	var err error
	if record {
		rec, err = l.recordURIs(ctx, own, now)
	} else {
		rec, err = l.loadURIs(ctx)
	}
	if err != nil {
		return own, err
	}
	m := own
	m.RedirectURIs = liveUnion(own.RedirectURIs, rec.Redirect, now)
	if len(own.PostLogoutRedirectURIs) > 0 || len(rec.PostLogout) > 0 {
		m.PostLogoutRedirectURIs = liveUnion(own.PostLogoutRedirectURIs, rec.PostLogout, now)
	}
	return m, nil
}

// liveUnion is the sorted union of own and the URIs of seen seen within
// replicaWindow of now.
func liveUnion(own []string, seen map[string]int64, now time.Time) []string {
	out := slices.Clone(own)
	for u, at := range seen {
		if now.Sub(time.Unix(at, 0)) < replicaWindow {
			out = append(out, u)
		}
	}
	slices.Sort(out)
	return slices.Compact(out)
}

// recordURIs records own's URIs as seen at now and forgets URIs not seen
// for replicaWindow, under the store's lock when it has one. It returns the
// record. It writes nothing when every URI of own was recorded less than
// replicaRefresh ago. An unreadable record is replaced by one holding the
// URIs registered now, as seen now, so that none is dropped before its
// replica could record it again.
func (l *lifecycle) recordURIs(ctx context.Context, own ClientMetadata, now time.Time) (*replicaURIs, error) {
	rec, err := l.loadURIs(ctx)
	if err == nil && recentlyRecorded(rec, own, now) {
		return rec, nil
	}
	if lk, ok := l.cfg.Store.(Locker); ok {
		unlock, lerr := lk.Lock(ctx, l.urisKey())
		if lerr != nil {
			l.log.Warn("oidcrp: could not lock the record of the replicas' redirect URIs; not updating it", "err", lerr)
			return rec, err
		}
		defer unlock()
		rec, err = l.loadURIs(ctx)
	}
	if errors.Is(err, ErrCorruptStore) {
		l.log.Warn("oidcrp: the record of the replicas' redirect URIs is unreadable; starting it afresh with the URIs registered now",
			"key", l.urisKey(), "err", err)
		rec, err = l.seedURIs(ctx, now)
	}
	if err != nil {
		return nil, err
	}
	for _, set := range []struct {
		seen map[string]int64
		own  []string
	}{{rec.Redirect, own.RedirectURIs}, {rec.PostLogout, own.PostLogoutRedirectURIs}} {
		maps.DeleteFunc(set.seen, func(_ string, at int64) bool { return now.Sub(time.Unix(at, 0)) >= replicaWindow })
		for _, u := range set.own {
			set.seen[u] = now.Unix()
		}
	}
	b, _ := json.Marshal(rec)
	if err := l.cfg.Store.Save(ctx, l.urisKey(), b); err != nil {
		l.log.Warn("oidcrp: could not record this replica's redirect URIs; other replicas may drop them from the registration", "key", l.urisKey(), "err", err)
	}
	return rec, nil
}

// recentlyRecorded reports whether every URI of own was recorded less than
// replicaRefresh before now.
func recentlyRecorded(rec *replicaURIs, own ClientMetadata, now time.Time) bool {
	for _, set := range []struct {
		seen map[string]int64
		own  []string
	}{{rec.Redirect, own.RedirectURIs}, {rec.PostLogout, own.PostLogoutRedirectURIs}} {
		for _, u := range set.own {
			at, ok := set.seen[u]
			if !ok || now.Sub(time.Unix(at, 0)) >= replicaRefresh {
				return false
			}
		}
	}
	return true
}

// loadURIs returns the record, empty when there is none. An unreadable
// record is an error wrapping ErrCorruptStore.
func (l *lifecycle) loadURIs(ctx context.Context) (*replicaURIs, error) {
	rec := &replicaURIs{Version: 1, Redirect: map[string]int64{}, PostLogout: map[string]int64{}}
	b, err := l.cfg.Store.Load(ctx, l.urisKey())
	if errors.Is(err, ErrNotFound) {
		return rec, nil
	}
	if err != nil {
		return nil, fmt.Errorf("oidcrp: load the replicas' redirect URIs: %w", err)
	}
	var got replicaURIs
	if err := json.Unmarshal(b, &got); err != nil {
		return nil, fmt.Errorf("%w: the replicas' redirect URIs: %v", ErrCorruptStore, err)
	}
	if got.Version != 1 {
		return nil, fmt.Errorf("%w: the replicas' redirect URIs: version %d", ErrCorruptStore, got.Version)
	}
	maps.Copy(rec.Redirect, got.Redirect)
	maps.Copy(rec.PostLogout, got.PostLogout)
	return rec, nil
}

// seedURIs returns a record of the URIs of the stored registration, as seen
// at now.
func (l *lifecycle) seedURIs(ctx context.Context, now time.Time) (*replicaURIs, error) {
	rec := &replicaURIs{Version: 1, Redirect: map[string]int64{}, PostLogout: map[string]int64{}}
	stored, err := l.load(ctx)
	if err != nil {
		return nil, err
	}
	if stored != nil && stored.Issuer == l.cfg.Issuer {
		for _, u := range stored.Metadata.RedirectURIs {
			rec.Redirect[u] = now.Unix()
		}
		for _, u := range stored.Metadata.PostLogoutRedirectURIs {
			rec.PostLogout[u] = now.Unix()
		}
	}
	return rec, nil
}

// followReplicas records this replica's URIs again and, when the union of
// the live replicas' URIs no longer matches the current registration (a
// replica appeared, or one has not been seen for replicaWindow), renews the
// client now, which updates the registration or adopts the update a peer
// made. Called by the periodic maintenance.
func (l *lifecycle) followReplicas(ctx context.Context) {
	c := l.cur.Load()
	if c == nil || c.gone || l.cfg.ClientID != "" {
		return
	}
	own, err := l.ownMetadata(ctx, c.disc)
	if err != nil {
		return
	}
	want, err := l.replicaMetadata(ctx, own, true)
	if err != nil {
		l.log.Warn("oidcrp: could not read the replicas' redirect URIs", "err", err)
		return
	}
	// Compared with the registration in the store as well as with ours: a
	// peer may have updated it without our URIs while we were not seen.
	stored, err := l.load(ctx)
	if err != nil {
		return // logged
	}
	fp := fingerprint(l.cfg.Issuer, want)
	if fp == c.creds.Fingerprint && (stored == nil || stored.ClientID != c.creds.ClientID || fp == stored.Fingerprint) {
		return
	}
	next := *c
	next.renewAt = l.now() // the next setup renews, keeping the discovery
	if l.cur.CompareAndSwap(c, &next) {
		_, _ = l.connect(ctx) // a failure is logged, and retried by the next request
	}
}
