package oidcrp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"strings"
	"time"
)

// Timing of the registration lifecycle.
const (
	renewRetry      = 30 * time.Second // next renewal attempt after one failed while the old secret still works
	reregisterEvery = 30 * time.Second // at most one replacement of a rejected registration per period
	verifyEvery     = 10 * time.Second // at most one "does the client still exist" check per period
	checkEvery      = time.Hour        // periodic check of the registration while logins happen
	cleanupTimeout  = 10 * time.Second
)

// credentials returns usable credentials: the configured client, the stored
// registration, or a new or renewed one, which it stores. renewAt is when
// they need renewing (zero: never). prev is the connection being renewed, or
// nil at first use.
func (rp *RP) credentials(ctx context.Context, disc *discovery, prev *conn) (creds *Credentials, renewAt time.Time, err error) {
	if rp.cfg.ClientID != "" {
		return &Credentials{Issuer: rp.cfg.Issuer, ClientID: rp.cfg.ClientID, ClientSecret: Secret(rp.cfg.ClientSecret), Metadata: rp.cfg.Metadata}, time.Time{}, nil
	}
	if disc.RegistrationEndpoint == "" {
		return nil, time.Time{}, ErrNoRegistration
	}
	want, err := rp.wantMetadata(disc)
	if err != nil {
		return nil, time.Time{}, err
	}
	fp := fingerprint(rp.cfg.Issuer, want)

	stored, err := rp.loadCredentials(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	dead := "" // a stored client the provider no longer knows
	if rp.usable(stored, fp) {
		if prev != nil {
			return stored, rp.renewAt(stored), nil
		}
		// First use in this process: check the provider still knows the client.
		if cur, alive := rp.checkRegistration(ctx, disc, stored); alive {
			return cur, rp.renewAt(cur), nil
		}
		dead = stored.ClientID
	}

	// Exclude peers sharing the store while replacing the credentials, and
	// look again once excluded: a peer may have done it while we waited.
	if l, ok := rp.cfg.Store.(Locker); ok {
		unlock, err := l.Lock(ctx, rp.cfg.StoreKey)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("oidcrp: lock credential store: %w", err)
		}
		defer unlock()
		if stored, err = rp.loadCredentials(ctx); err != nil {
			return nil, time.Time{}, err
		}
		if rp.usable(stored, fp) && stored.ClientID != dead {
			return stored, rp.renewAt(stored), nil
		}
	}

	if stored != nil && stored.ClientID == dead {
		stored = nil // nothing to renew or clean up at the provider
	}
	fresh, err := rp.obtain(ctx, disc, stored, want, fp)
	if err != nil {
		if stored != nil && stored.Fingerprint == fp && !stored.expiresWithin(rp.now(), 0) && stored.Issuer == rp.cfg.Issuer {
			// Renewal failed but the secret still works: keep it, try again soon.
			rp.log.Warn("oidcrp: renewing client credentials failed; using the current ones", "client_id", stored.ClientID,
				"expires_at", stored.ClientSecretExpiresAt, "err", err)
			return stored, rp.now().Add(renewRetry), nil
		}
		return nil, time.Time{}, err
	}
	if fresh.expiresWithin(rp.now(), 0) {
		return nil, time.Time{}, &RegistrationError{Reason: fmt.Sprintf("the provider issued a client secret that expired at %s", fresh.ClientSecretExpiresAt.UTC().Format(time.RFC3339))}
	}
	if err := rp.saveCredentials(ctx, fresh); err != nil {
		if errors.Is(err, ErrLockLost) {
			// Our lease expired while we registered and a peer took over:
			// use the peer's client and withdraw ours.
			if other, lerr := rp.loadCredentials(ctx); lerr == nil && rp.usable(other, fp) {
				if fresh.ClientID != other.ClientID && fresh.RegistrationClientURI != "" {
					rp.deleteSuperseded(ctx, fresh)
				}
				return other, rp.renewAt(other), nil
			}
		}
		// The provider issued them; losing them would orphan a client, so use
		// them in this process and report the store failure loudly.
		rp.log.Error("oidcrp: storing client credentials failed; they live in this process only", "client_id", fresh.ClientID, "err", err)
	}
	rp.cleanupSuperseded(ctx)
	return fresh, rp.renewAt(fresh), nil
}

// usable reports whether stored credentials fit the current configuration
// and are not about to expire.
func (rp *RP) usable(c *Credentials, fp string) bool {
	return c != nil && c.Issuer == rp.cfg.Issuer && c.Fingerprint == fp && !c.expiresWithin(rp.now(), rp.margin(c))
}

// margin is how long before expiry a secret is renewed: RenewBefore, or
// half the secret's lifetime when that is shorter, so that a provider
// issuing short-lived secrets does not cause a registration per request.
func (rp *RP) margin(c *Credentials) time.Duration {
	m := rp.cfg.RenewBefore
	if !c.ClientSecretExpiresAt.IsZero() && !c.RegisteredAt.IsZero() {
		m = min(m, c.ClientSecretExpiresAt.Sub(c.RegisteredAt)/2)
	}
	return max(m, 0)
}

// renewAt is when c needs renewing (zero: never); never now or before, so
// that a provider issuing secrets already about to expire cannot cause a
// renewal per request.
func (rp *RP) renewAt(c *Credentials) time.Time {
	if c.ClientSecretExpiresAt.IsZero() {
		return time.Time{}
	}
	at, now := c.ClientSecretExpiresAt.Add(-rp.margin(c)), rp.now()
	if !at.After(now) {
		at = now.Add(min(renewRetry, max(time.Second, c.ClientSecretExpiresAt.Sub(now)/2)))
	}
	return at
}

// obtain renews stored credentials through RFC 7592 where it can (a changed
// configuration is updated in place, an expiring secret is read anew) and
// registers a new client otherwise.
func (rp *RP) obtain(ctx context.Context, disc *discovery, stored *Credentials, want ClientMetadata, fp string) (*Credentials, error) {
	g := rp.registrar()
	latest := stored // the old registration as last seen: a read or update may rotate its token
	if stored != nil && stored.Issuer == rp.cfg.Issuer && stored.RegistrationClientURI != "" {
		var c *Credentials
		var err error
		op := "read"
		if stored.Fingerprint != fp {
			op = "update"
			c, err = rp.traced(ctx, OpRegistrationUpdate, stored.ClientID, func(ctx context.Context) (*Credentials, error) {
				return g.update(ctx, stored, want)
			})
		} else {
			c, err = rp.traced(ctx, OpRegistrationRead, stored.ClientID, func(ctx context.Context) (*Credentials, error) {
				return g.read(ctx, stored)
			})
		}
		if err == nil {
			latest = c
		}
		switch {
		case err == nil && !c.expiresWithin(rp.now(), rp.margin(c)):
			rp.log.Info("oidcrp: client registration renewed", "op", op, "client_id", c.ClientID, "secret_expires_at", c.ClientSecretExpiresAt)
			return c, nil
		case err == nil && op == "read":
			// Still expiring: an update may issue a new secret (RFC 7592 §2.2).
			// RFC 7592 §2.2: the metadata as the provider returned it.
			c2, err2 := rp.traced(ctx, OpRegistrationUpdate, c.ClientID, func(ctx context.Context) (*Credentials, error) {
				return g.update(ctx, c, c.Metadata)
			})
			if err2 == nil {
				c2.Fingerprint = fp
				latest = c2
				if !c2.expiresWithin(rp.now(), rp.margin(c2)) {
					rp.log.Info("oidcrp: client registration renewed", "op", "update", "client_id", c2.ClientID, "secret_expires_at", c2.ClientSecretExpiresAt)
					return c2, nil
				}
				err2 = errors.New("the provider issued no fresher secret")
			}
			err = err2
		}
		rp.log.Warn("oidcrp: renewing the registration failed; registering anew", "op", op, "client_id", stored.ClientID, "err", err)
	}
	start := rp.now()
	c, err := rp.traced(ctx, OpRegistration, "", func(ctx context.Context) (*Credentials, error) {
		return g.register(ctx, rp.cfg.Issuer, disc.RegistrationEndpoint, rp.cfg.InitialAccessToken, want)
	})
	if err != nil {
		rp.log.Error("oidcrp: client registration failed", "err", err)
		return nil, err
	}
	rp.log.Info("oidcrp: registered client", "client_id", c.ClientID, "auth_method", c.authMethod(),
		"secret_expires_at", c.ClientSecretExpiresAt, "duration", rp.now().Sub(start))
	if latest != nil && latest.ClientID != c.ClientID && latest.Issuer == rp.cfg.Issuer && latest.RegistrationClientURI != "" {
		rp.deleteSuperseded(ctx, latest)
	}
	return c, nil
}

// deleteSuperseded removes a replaced registration at the provider so it is
// not left behind; a failure is logged, not returned.
func (rp *RP) deleteSuperseded(ctx context.Context, old *Credentials) {
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	ctx, end := rp.span(ctx, OpRegistrationDelete, old.ClientID)
	err := rp.registrar().remove(ctx, old)
	end(err)
	if err != nil {
		rp.log.Warn("oidcrp: could not delete the superseded registration; recorded for later", "client_id", old.ClientID, "err", err)
		rp.recordSuperseded(ctx, old)
		return
	}
	rp.log.Info("oidcrp: deleted the superseded registration", "client_id", old.ClientID)
}

// supersededKey keeps replaced registrations not yet deleted at the provider.
func (rp *RP) supersededKey() string { return rp.cfg.StoreKey + "#superseded" }

// recordSuperseded adds old to the registrations to delete later.
func (rp *RP) recordSuperseded(ctx context.Context, old *Credentials) {
	list, _ := rp.loadSuperseded(ctx)
	list = append(list, old)
	if err := rp.saveSuperseded(ctx, list); err != nil {
		rp.log.Error("oidcrp: recording a superseded registration failed; it may be left at the provider", "client_id", old.ClientID, "err", err)
	}
}

// cleanupSuperseded deletes recorded superseded registrations at the
// provider and forgets those that are gone.
func (rp *RP) cleanupSuperseded(ctx context.Context) {
	list, err := rp.loadSuperseded(ctx)
	if err != nil || len(list) == 0 {
		return
	}
	var left []*Credentials
	for _, old := range list {
		dctx, end := rp.span(ctx, OpRegistrationDelete, old.ClientID)
		err := rp.registrar().remove(dctx, old)
		end(err)
		if err != nil {
			left = append(left, old)
			continue
		}
		rp.log.Info("oidcrp: deleted a superseded registration", "client_id", old.ClientID)
	}
	if err := rp.saveSuperseded(ctx, left); err != nil {
		rp.log.Warn("oidcrp: updating superseded registrations failed", "err", err)
	}
}

func (rp *RP) loadSuperseded(ctx context.Context) ([]*Credentials, error) {
	b, err := rp.cfg.Store.Load(ctx, rp.supersededKey())
	if err != nil {
		return nil, err
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: superseded registrations: %v", ErrCorruptStore, err)
	}
	var list []*Credentials
	for _, r := range raw {
		if c, err := decodeCredentials(r); err == nil {
			list = append(list, c)
		}
	}
	return list, nil
}

func (rp *RP) saveSuperseded(ctx context.Context, list []*Credentials) error {
	if len(list) == 0 {
		return rp.cfg.Store.Delete(ctx, rp.supersededKey())
	}
	raw := make([]json.RawMessage, 0, len(list))
	for _, c := range list {
		b, err := encodeCredentials(c)
		if err != nil {
			return err
		}
		raw = append(raw, b)
	}
	b, _ := json.Marshal(raw)
	return rp.cfg.Store.Save(ctx, rp.supersededKey(), b)
}

// traced runs a registration operation as a span.
func (rp *RP) traced(ctx context.Context, op Op, clientID string, fn func(context.Context) (*Credentials, error)) (*Credentials, error) {
	ctx, end := rp.span(ctx, op, clientID)
	c, err := fn(ctx)
	end(err)
	return c, err
}

func (rp *RP) registrar() registrar { return registrar{client: rp.httpClient, now: rp.now} }

func (rp *RP) loadCredentials(ctx context.Context) (*Credentials, error) {
	b, err := rp.cfg.Store.Load(ctx, rp.cfg.StoreKey)
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		rp.log.Error("oidcrp: loading client credentials failed", "key", rp.cfg.StoreKey, "err", err)
		return nil, fmt.Errorf("oidcrp: load credentials: %w", err)
	}
	c, err := decodeCredentials(b)
	if err != nil {
		rp.log.Error("oidcrp: stored client credentials are unreadable; fix or delete them", "key", rp.cfg.StoreKey, "err", err)
		return nil, err
	}
	return c, nil
}

func (rp *RP) saveCredentials(ctx context.Context, c *Credentials) error {
	b, err := encodeCredentials(c)
	if err != nil {
		return err
	}
	return rp.cfg.Store.Save(ctx, rp.cfg.StoreKey, b)
}

// checkRegistration checks credentials against the provider, when the
// provider gives a way to: an RFC 7592 read, else a token request with a code
// that cannot exist, which a provider answers with invalid_grant for a known
// client and invalid_client for an unknown one. Only a clear "unknown client"
// reports the client gone. A read may rotate the secret or the registration
// access token (RFC 7592 §2.1): the new values are stored at once and
// returned.
func (rp *RP) checkRegistration(ctx context.Context, disc *discovery, c *Credentials) (current *Credentials, alive bool) {
	if c.RegistrationClientURI == "" {
		code, err := rp.probeToken(ctx, disc, c)
		if err == nil && (code == "invalid_client" || code == "unauthorized_client") {
			rp.log.Warn("oidcrp: the provider rejects the stored client", "client_id", c.ClientID, "error", code)
			return c, false
		}
		return c, true
	}
	// Reads may rotate the registration access token: replicas sharing the
	// store take turns, each with the token the previous one stored.
	unlock := rp.lockStore(ctx)
	defer unlock()
	if stored, err := rp.loadCredentials(ctx); err == nil && stored != nil && stored.ClientID == c.ClientID {
		c = stored
	}
	fresh, err := rp.traced(ctx, OpRegistrationRead, c.ClientID, func(ctx context.Context) (*Credentials, error) {
		return rp.registrar().read(ctx, c)
	})
	var re *RegistrationError
	switch {
	case errors.As(err, &re) && re.StatusCode == http.StatusUnauthorized:
		rp.log.Warn("oidcrp: the provider no longer knows the stored client", "client_id", c.ClientID)
		return c, false
	case err != nil:
		rp.log.Warn("oidcrp: could not check the registration; assuming it stands", "client_id", c.ClientID, "err", err)
		return c, true
	}
	if fresh.ClientSecret != c.ClientSecret || fresh.RegistrationAccessToken != c.RegistrationAccessToken || fresh.RegistrationClientURI != c.RegistrationClientURI {
		if err := rp.saveCredentials(ctx, fresh); err != nil {
			rp.log.Error("oidcrp: storing rotated client credentials failed", "client_id", c.ClientID, "err", err)
		}
	}
	return fresh, true
}

// lockStore takes the store's lock on the credentials, when the store has
// locks, and returns its release. A failure to lock is logged and the work
// goes on unlocked.
func (rp *RP) lockStore(ctx context.Context) (unlock func()) {
	l, ok := rp.cfg.Store.(Locker)
	if !ok {
		return func() {}
	}
	unlock, err := l.Lock(ctx, rp.cfg.StoreKey)
	if err != nil {
		rp.log.Warn("oidcrp: could not lock the credential store", "err", err)
		return func() {}
	}
	return unlock
}

// probeToken sends a token request with a made-up code and returns the
// OAuth error code of the answer.
func (rp *RP) probeToken(ctx context.Context, disc *discovery, c *Credentials) (string, error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {"oidcrp-probe"}, "redirect_uri": {rp.cfg.RedirectURL}}
	basic := c.authMethod() == "client_secret_basic"
	if !basic {
		form.Set("client_id", c.ClientID)
		if c.ClientSecret != "" {
			form.Set("client_secret", string(c.ClientSecret))
		}
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodPost, disc.TokenEndpoint, strings.NewReader(form.Encode()))
	if err != nil {
		return "", err
	}
	if basic {
		req.SetBasicAuth(url.QueryEscape(c.ClientID), url.QueryEscape(string(c.ClientSecret)))
	}
	req.Header.Set("Content-Type", "application/x-www-form-urlencoded")
	resp, err := rp.httpClient.Do(req)
	if err != nil {
		return "", err
	}
	defer resp.Body.Close()
	var e struct {
		Error string `json:"error"`
	}
	if err := json.NewDecoder(io.LimitReader(resp.Body, maxResponseBytes)).Decode(&e); err != nil {
		return "", err
	}
	return e.Error, nil
}

// replaceRejected is called when the provider rejected the client at the
// token endpoint. It confirms the client is gone and, at most once per
// period, drops it so the next setup registers anew. It reports whether the
// registration was replaced, so that the caller may restart the login.
func (rp *RP) replaceRejected(ctx context.Context, c *conn) bool {
	if rp.cfg.ClientID != "" {
		return false // a hand-made client cannot be replaced
	}
	rp.verifyMu.Lock()
	defer rp.verifyMu.Unlock()
	if cur := rp.cur.Load(); cur != c {
		return cur != nil // already replaced by someone else
	}
	if rp.now().Sub(rp.lastRenewal) < reregisterEvery {
		rp.log.Warn("oidcrp: client rejected again soon after its replacement; not registering again yet", "client_id", c.creds.ClientID)
		return false
	}
	refused := c.creds
	if c.creds.RegistrationClientURI != "" {
		cur, alive := rp.checkRegistration(ctx, c.disc, c.creds)
		if alive {
			// The client exists; its secret may have been rotated, here or by a peer.
			if cur.ClientSecret != c.creds.ClientSecret {
				return rp.adopt(c, cur)
			}
			return rp.reload(ctx, c)
		}
		refused = cur
	}
	rp.lastRenewal = rp.now()
	rp.forget(ctx, c, refused)
	return true
}

// forget drops a connection whose client the provider no longer knows: the
// stored credentials (unless a peer already replaced them) and the
// connection, so that the next request registers anew.
func (rp *RP) forget(ctx context.Context, c *conn, refused *Credentials) {
	// Only the credentials that were refused: a peer may have renewed them.
	unlock := rp.lockStore(ctx)
	if stored, err := rp.loadCredentials(ctx); err == nil && stored != nil && stored.ClientID == refused.ClientID &&
		stored.RegistrationAccessToken == refused.RegistrationAccessToken && stored.ClientSecret == refused.ClientSecret {
		if err := rp.cfg.Store.Delete(ctx, rp.cfg.StoreKey); err != nil {
			rp.log.Error("oidcrp: deleting rejected credentials failed", "err", err)
		}
	}
	unlock()
	next := *c
	next.renewAt, next.gone = rp.now(), true // renew on next use, keeping the discovery
	rp.cur.CompareAndSwap(c, &next)
	rp.log.Warn("oidcrp: dropped a client the provider no longer knows; the next login registers anew", "client_id", c.creds.ClientID)
}

// reload replaces the connection's credentials with the stored ones if a
// peer changed them.
func (rp *RP) reload(ctx context.Context, c *conn) bool {
	stored, err := rp.loadCredentials(ctx)
	if err != nil || stored == nil || (stored.ClientID == c.creds.ClientID && stored.ClientSecret == c.creds.ClientSecret) {
		return false
	}
	return rp.adopt(c, stored)
}

// adopt replaces connection c by one with creds, unless c was replaced
// meanwhile.
func (rp *RP) adopt(c *conn, creds *Credentials) bool {
	return rp.cur.CompareAndSwap(c, rp.newConn(c.disc, c, creds, rp.renewAt(creds)))
}

// verifyBeforeLogin is called when a browser starts a login while an earlier
// attempt of it never came back: the provider may have refused to show its
// login page because it forgot the client. It checks, at most once per
// period, and drops a forgotten client.
func (rp *RP) verifyBeforeLogin(ctx context.Context, c *conn) {
	if rp.cfg.ClientID != "" {
		return
	}
	rp.verifyMu.Lock()
	if rp.now().Sub(rp.lastVerify) < verifyEvery || rp.cur.Load() != c {
		rp.verifyMu.Unlock()
		return
	}
	rp.lastVerify = rp.now()
	rp.verifyMu.Unlock()
	rp.verify(ctx, c)
}

// verify checks c's registration at the provider: a forgotten client is
// dropped so the next login registers anew, rotated values are adopted.
func (rp *RP) verify(ctx context.Context, c *conn) {
	if rp.cfg.ClientID != "" {
		return
	}
	cur, alive := rp.checkRegistration(ctx, c.disc, c.creds)
	rp.verifyMu.Lock()
	defer rp.verifyMu.Unlock()
	if !alive {
		rp.lastRenewal = rp.now()
		rp.forget(ctx, c, cur)
	} else if cur != c.creds {
		rp.adopt(c, cur)
	}
}

// Decommission deletes the client registration at the provider (RFC 7592
// §2.3) and the stored credentials, so nothing is left behind; the next
// request that needs a login registers anew. A registration without a client
// configuration endpoint cannot be deleted at the provider: its credentials
// are still removed from the store, and the error says so.
func (rp *RP) Decommission(ctx context.Context) error {
	if rp.cfg.ClientID != "" {
		return errors.New("oidcrp: a client configured by hand cannot be decommissioned")
	}
	creds, err := rp.loadCredentials(ctx)
	if err != nil {
		return err
	}
	if c := rp.cur.Load(); creds == nil && c != nil {
		creds = c.creds // registered, but the store lost it
	}
	var remoteErr error
	if creds != nil {
		if creds.RegistrationClientURI == "" {
			remoteErr = fmt.Errorf("oidcrp: client %s has no client configuration endpoint; delete it at the provider by hand", creds.ClientID)
		} else {
			dctx, end := rp.span(ctx, OpRegistrationDelete, creds.ClientID)
			remoteErr = rp.registrar().remove(dctx, creds)
			end(remoteErr)
			if remoteErr != nil {
				return fmt.Errorf("oidcrp: decommission: %w", remoteErr)
			}
		}
		rp.log.Info("oidcrp: decommissioned client", "client_id", creds.ClientID)
	}
	rp.cleanupSuperseded(ctx)
	if err := rp.cfg.Store.Delete(ctx, rp.cfg.StoreKey); err != nil {
		return fmt.Errorf("oidcrp: decommission: %w", err)
	}
	rp.cur.Store(nil)
	return remoteErr
}
