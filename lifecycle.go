package oidcrp

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/url"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/coreos/go-oidc/v3/oidc"
	"golang.org/x/oauth2"
)

// Timing of the client's lifecycle.
const (
	setupTimeout     = 60 * time.Second // bounds one setup, which runs detached from the request that started it
	cleanupTimeout   = 10 * time.Second // bounds deleting a superseded registration
	renewRetry       = 30 * time.Second // next renewal attempt after one failed while the old secret still works
	reregisterEvery  = 30 * time.Second // at most one replacement of a rejected registration per period
	verifyEvery      = 5 * time.Second  // at most one check on suspicion that the provider forgot the client
	checkEvery       = time.Hour        // periodic maintenance while the client is in use
	rejectionEpisode = time.Hour        // refusals this close together are one episode
	freshClient      = 5 * time.Minute  // a client registered this recently is fresh
)

// client is a ready client of the provider: its discovery document, the
// credentials in use and what is built from them. It is immutable; the
// lifecycle replaces it.
type client struct {
	disc     *discovery
	provider *oidc.Provider
	creds    *credentials
	oauth    *oauth2.Config
	verifier *oidc.IDTokenVerifier
	http     *http.Client
	keys     *keyManager      // the relying party's keys, for client assertions
	now      func() time.Time // the lifecycle's clock
	renewAt  time.Time        // when the credentials need renewing; zero: never
	gone     bool             // the provider no longer knows the client
}

// context returns ctx carrying the HTTP client for go-oidc and x/oauth2.
func (c *client) context(ctx context.Context) context.Context {
	return oidc.ClientContext(ctx, c.http)
}

// lifecycle owns the provider client: discovery, the stored credentials,
// registration (RFC 7591), the RFC 7592 checks, renewal of expiring secrets,
// replacement of a client the provider forgot, deletion of superseded
// registrations, and decommission.
//
// The request path asks it one question, [lifecycle.client], and reports
// one event, [lifecycle.rejected]. Only when the token endpoint refuses
// HTTP Basic credentials that form-encoding changed does it also ask for
// the other ways to send them ([lifecycle.encodings]) and report the one
// that worked ([lifecycle.settle]). Everything else happens inside: setup
// on first use, shared by concurrent callers and backed off after a
// failure, and a periodic maintenance on a timer.
type lifecycle struct {
	cfg       *Config // read only
	legacyKey string  // where an earlier release kept the credentials, if anywhere
	http      *http.Client
	log       *slog.Logger
	trace     *tracer
	now       func() time.Time

	cur   atomic.Pointer[client]
	setup inflight[struct{}, *client]
	used  atomic.Bool // a client was asked for since the last maintenance

	checking sync.Mutex  // one check of the registration at a time
	failing  episode     // failed setups, logged once per outage
	stale    atomic.Bool // using credentials whose renewal failed was logged

	mu          sync.Mutex // guards the fields below
	failures    int        // consecutive failed setups
	retryAt     time.Time  // no setup before then
	lastErr     error      // of the last failed setup
	lastVerify  time.Time  // last check on suspicion
	lastRenewal time.Time  // last replacement of a client the provider rejected
	timer       *time.Timer
	closed      bool

	dur durability // credentials the store refused, intents to register

	keys   *keyManager           // the relying party's own keys (keys.go)
	keyErr atomic.Pointer[error] // why the last publication of new keys failed
}

// client returns the current client, setting it up or renewing its
// credentials first when needed. A failure wraps ErrUnavailable.
func (l *lifecycle) client(ctx context.Context) (*client, error) {
	l.used.Store(true)
	l.flushSoon() // credentials the store refused, once it accepts writes again
	now := l.now()
	if c := l.cur.Load(); c != nil && (c.renewAt.IsZero() || now.Before(c.renewAt)) {
		return c, nil
	}
	c, err := l.connect(ctx)
	if err == nil {
		return c, nil
	}
	if cur := l.cur.Load(); cur != nil && !cur.gone && !cur.creds.expiresWithin(now, 0) {
		// Renewal failed (store or provider down) but the secret still works:
		// said once until a setup succeeds, not once per request.
		level := slog.LevelDebug
		if !l.stale.Swap(true) {
			level = slog.LevelWarn
		}
		l.log.Log(ctx, level, "oidcrp: renewing the client failed; using the current credentials until they expire", "client_id", cur.creds.ClientID,
			"expires_at", cur.creds.ClientSecretExpiresAt, "err", err)
		return cur, nil
	}
	return nil, err
}

// connect runs one setup for all concurrent callers. After a failure,
// callers get it again without a new attempt until a backoff has passed,
// so a provider outage costs one attempt per period, not one per request.
func (l *lifecycle) connect(ctx context.Context) (*client, error) {
	l.mu.Lock()
	if now := l.now(); now.Before(l.retryAt) {
		err := &unavailableError{cause: l.lastErr, retryAfter: l.retryAt.Sub(now)}
		l.mu.Unlock()
		return nil, err
	}
	l.mu.Unlock()
	c, err, _ := l.setup.do(ctx, struct{}{}, func(ctx context.Context) (*client, error) {
		// Detached: the request that happens to run the setup may go away,
		// the others still want its result.
		ctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), setupTimeout)
		defer cancel()
		c, err := l.establish(ctx)
		l.mu.Lock()
		defer l.mu.Unlock()
		if err != nil {
			l.failures++
			l.lastErr = err
			l.retryAt = l.now().Add(backoff(l.failures))
			l.failing.failed(l.log, slog.LevelError, l.now(), "oidcrp: client setup failed", err, "retry_in", backoff(l.failures))
			return nil, err
		}
		l.failures, l.lastErr, l.retryAt = 0, nil, time.Time{}
		l.failing.ended(l.log, l.now(), "oidcrp: client setup works again", "client_id", c.creds.ClientID)
		l.stale.Store(false)
		if l.timer == nil && !l.closed {
			l.timer = time.AfterFunc(checkEvery, l.tick)
		}
		return c, nil
	})
	if err != nil {
		retry := backoff(1)
		l.mu.Lock()
		if d := l.retryAt.Sub(l.now()); d > 0 {
			retry = d
		}
		l.mu.Unlock()
		return nil, &unavailableError{cause: err, retryAfter: retry}
	}
	return c, nil
}

// backoff is 1s, 2s, 4s … capped at one minute.
func backoff(failures int) time.Duration {
	d := time.Second << min(max(failures, 1)-1, 6)
	return min(d, time.Minute)
}

// establish discovers the provider (once) and obtains credentials.
func (l *lifecycle) establish(ctx context.Context) (*client, error) {
	prev := l.cur.Load()
	var disc *discovery
	if prev != nil {
		disc = prev.disc
	} else {
		dctx, end := l.trace.span(ctx, opDiscovery, "")
		d, err := discover(dctx, l.http, l.cfg.Issuer, l.log)
		if err == nil {
			err = checkPAR(l.cfg, d)
		}
		if err == nil {
			err = checkDPoP(l.cfg, d)
		}
		end(err)
		if err != nil {
			return nil, err
		}
		disc = d
		l.trace.jwksURL(d.JWKSURI)
	}
	creds, renewAt, err := l.obtain(ctx, disc, prev)
	if err != nil {
		return nil, err
	}
	c := l.build(disc, prev, creds, renewAt)
	l.cur.Store(c)
	return c, nil
}

// build makes the client for creds: the OAuth 2.0 configuration and the ID
// token verifier. A renewal keeps the provider, and with it its cached keys.
func (l *lifecycle) build(disc *discovery, prev *client, creds *credentials, renewAt time.Time) *client {
	c := &client{disc: disc, creds: creds, keys: l.keys, now: l.now, renewAt: renewAt}
	if prev != nil {
		c.provider = prev.provider
	} else {
		c.provider = (&oidc.ProviderConfig{
			IssuerURL:   disc.Issuer,
			AuthURL:     disc.AuthorizationEndpoint,
			TokenURL:    disc.TokenEndpoint,
			UserInfoURL: disc.UserinfoEndpoint,
			JWKSURL:     disc.JWKSURI,
		}).NewProvider(oidc.ClientContext(context.Background(), l.http))
	}
	// x/oauth2 sends the secret as RFC 6749 §2.3.1 says; client assertions
	// and raw HTTP Basic are added by the HTTP client (auth.go).
	style, secret := oauth2.AuthStyleInParams, string(creds.ClientSecret)
	switch {
	case creds.usesAssertion():
		secret = ""
	case creds.authMethod() == "client_secret_basic" && creds.AuthStyle != stylePost:
		style = oauth2.AuthStyleInHeader
	}
	c.http = withTokenAuth(l.http, c)
	c.oauth = &oauth2.Config{
		ClientID:     creds.ClientID,
		ClientSecret: secret,
		Endpoint:     oauth2.Endpoint{AuthURL: disc.AuthorizationEndpoint, TokenURL: disc.TokenEndpoint, AuthStyle: style},
		RedirectURL:  l.cfg.RedirectURL,
		Scopes:       l.cfg.Scopes,
	}
	c.verifier = c.provider.Verifier(&oidc.Config{
		ClientID:             creds.ClientID,
		SupportedSigningAlgs: []string{c.idTokenAlg()},
		Now:                  l.now,
	})
	return c
}

// encodings returns c with its secret sent the other ways a provider may
// expect, to try when the token endpoint answered invalid_client to HTTP
// Basic credentials that form-encoding changed: RFC 6749 §2.3.1 has both
// sides form-encode them, and some providers do not decode. First raw HTTP
// Basic, then the form body where the provider supports client_secret_post.
// There is none when encoding changes nothing or the way is already settled.
// A client assertion addressed to the token endpoint (OIDC Core §9) has one
// alternative: addressed to the issuer, as some providers want it.
func (l *lifecycle) encodings(c *client) []*client {
	cr := c.creds
	if cr.usesAssertion() && cr.AuthStyle == "" && c.disc.TokenEndpoint != c.disc.Issuer {
		alt := *cr
		alt.AuthStyle = styleIssuerAudience
		return []*client{l.build(c.disc, c, &alt, c.renewAt)}
	}
	if cr.authMethod() != "client_secret_basic" || cr.AuthStyle != "" ||
		(url.QueryEscape(cr.ClientID) == cr.ClientID && url.QueryEscape(string(cr.ClientSecret)) == string(cr.ClientSecret)) {
		return nil
	}
	var alts []*client
	for _, style := range []string{styleRawBasic, stylePost} {
		if style == stylePost && !slices.Contains(c.disc.TokenEndpointAuthMethodsSupported, "client_secret_post") {
			continue
		}
		alt := *cr
		alt.AuthStyle = style
		alts = append(alts, l.build(c.disc, c, &alt, c.renewAt))
	}
	return alts
}

// settle makes the way alt sends c's secret the one in use, here and,
// through the store, for every replica and restart.
func (l *lifecycle) settle(ctx context.Context, c, alt *client) {
	if !l.cur.CompareAndSwap(c, alt) {
		return // replaced meanwhile
	}
	l.log.Warn("oidcrp: the provider accepts the client's authentication only when it is sent another way than RFC 6749 §2.3.1 and OIDC Core §9 say; using that way from now on",
		"client_id", alt.creds.ClientID, "auth_style", alt.creds.AuthStyle)
	unlock := l.lockStore(ctx)
	defer unlock()
	stored, err := l.load(ctx)
	if err != nil || stored == nil || stored.ClientID != alt.creds.ClientID || stored.ClientSecret != alt.creds.ClientSecret {
		return // a configured client, or a peer changed the credentials
	}
	stored.AuthStyle = alt.creds.AuthStyle
	if err := l.save(ctx, stored); err != nil {
		l.log.Error("oidcrp: storing how the token endpoint takes the client secret failed", "client_id", stored.ClientID, "err", err)
	}
}

// rejected reports that the provider rejected client c: with the token
// endpoint's refusal as cause (invalid_client), or on suspicion (cause nil)
// when logins never came back (a provider shows its own error page to a
// browser sent by a client it does not know). The lifecycle checks the
// registration (on suspicion at most once per verifyEvery), adopts
// credentials a peer or the provider rotated, and drops a forgotten client so
// that the next request registers anew (on a refusal at most once per
// reregisterEvery, and once per episode for a client registered to replace
// a refused one). It reports whether c was replaced, so that a login may be
// restarted.
func (l *lifecycle) rejected(ctx context.Context, c *client, cause error) bool {
	if l.cfg.ClientID != "" {
		return false // a client configured by hand cannot be replaced
	}
	if cause == nil {
		if !l.checking.TryLock() {
			return false // a check is under way
		}
		defer l.checking.Unlock()
		if l.cur.Load() != c || !l.due(&l.lastVerify, verifyEvery) {
			return false
		}
		return l.check(ctx, c, nil)
	}
	l.checking.Lock()
	defer l.checking.Unlock()
	if cur := l.cur.Load(); cur != c {
		return cur != nil // already replaced
	}
	l.mu.Lock()
	last := l.lastRenewal
	l.mu.Unlock()
	if l.now().Sub(last) < reregisterEvery {
		l.log.Warn("oidcrp: client rejected again soon after its replacement; not registering again yet", "client_id", c.creds.ClientID, "err", cause)
		return false
	}
	return l.check(ctx, c, cause)
}

// due reports whether at least every has passed since *last, and if so
// sets *last to now. last is a field guarded by l.mu.
func (l *lifecycle) due(last *time.Time, every time.Duration) bool {
	l.mu.Lock()
	defer l.mu.Unlock()
	now := l.now()
	if now.Sub(*last) < every {
		return false
	}
	*last = now
	return true
}

// check asks the provider whether c's client still exists, adopts rotated
// credentials and drops a forgotten client. cause is the token endpoint's
// refusal of c, if that is why it asks. Without a client configuration
// endpoint (RFC 7592) to ask, a refused client counts as forgotten, unless
// it was itself registered to replace a refused client within the episode
// (an hour): that points at the provider or the client authentication, not
// at a forgotten client, and refusals must not loop through registrations.
// It reports whether c was replaced. The caller holds l.checking.
func (l *lifecycle) check(ctx context.Context, c *client, cause error) bool {
	refused := c.creds
	if cause == nil || c.creds.RegistrationClientURI != "" {
		cur, alive := l.checkRegistration(ctx, c.disc, c.creds)
		if alive {
			if cur.ClientSecret != c.creds.ClientSecret || cur.RegistrationAccessToken != c.creds.RegistrationAccessToken {
				return l.adopt(c, cur)
			}
			if cause != nil && !l.reload(ctx, c) {
				l.log.Error("oidcrp: the token endpoint refuses a client the provider still knows; this points at the provider or the client authentication, not a forgotten client",
					"client_id", c.creds.ClientID, "registered", c.creds.RegisteredAt, "err", cause)
				return false
			}
			return cause != nil
		}
		refused = cur
	}
	if c.creds.RegistrationClientURI == "" {
		// Without RFC 7592 a refused client and a forgotten one look alike.
		l.mu.Lock()
		replacement := !l.lastRenewal.IsZero() && !c.creds.RegisteredAt.Before(l.lastRenewal) && l.now().Sub(l.lastRenewal) < rejectionEpisode
		l.mu.Unlock()
		if replacement {
			l.log.Error("oidcrp: the provider refuses the client registered to replace a refused one; not registering again: this points at the provider or the client authentication, not a forgotten client",
				"client_id", c.creds.ClientID, "registered", c.creds.RegisteredAt, "err", cause)
			return false
		}
	}
	if cause != nil && l.now().Sub(c.creds.RegisteredAt) < freshClient {
		l.log.Warn("oidcrp: the provider refuses a client it registered moments ago; a provider or client authentication problem is likelier than a forgotten client, but it is replaced once",
			"client_id", c.creds.ClientID, "registered", c.creds.RegisteredAt, "err", cause)
	}
	l.mu.Lock()
	l.lastRenewal = l.now()
	l.mu.Unlock()
	l.forget(ctx, c, refused)
	return true
}

// tick runs the periodic maintenance and schedules the next: superseded
// registrations whose deletion failed are deleted, and the registration is
// checked when the client was used since the last tick.
func (l *lifecycle) tick() {
	ctx, cancel := context.WithTimeout(context.Background(), setupTimeout)
	l.maintain(ctx, l.used.Swap(false))
	cancel()
	l.mu.Lock()
	if !l.closed {
		l.timer.Reset(checkEvery)
	}
	l.mu.Unlock()
}

// maintain deletes superseded registrations and, with check, asks the
// provider whether it still knows the client.
func (l *lifecycle) maintain(ctx context.Context, check bool) {
	if l.cfg.ClientID != "" {
		return
	}
	if c := l.cur.Load(); check && c != nil && !c.gone {
		l.checking.Lock()
		if l.cur.Load() == c {
			l.check(ctx, c, nil)
		}
		l.checking.Unlock()
	}
	l.flush(ctx)
	l.reviewIntent(ctx, false)
	l.followReplicas(ctx)
	l.cleanupSuperseded(ctx)
	_ = l.maintainKeys(ctx, false) // logged
}

// inherit takes over the rate limits of the lifecycle it replaces, for the
// same tenant: its failure backoff and the times of its last check and
// replacement. A rebuild must not allow a new burst of provider requests.
func (l *lifecycle) inherit(from *lifecycle) {
	from.mu.Lock()
	failures, retryAt, lastErr, lastVerify, lastRenewal := from.failures, from.retryAt, from.lastErr, from.lastVerify, from.lastRenewal
	from.mu.Unlock()
	l.mu.Lock()
	l.failures, l.retryAt, l.lastErr, l.lastVerify, l.lastRenewal = failures, retryAt, lastErr, lastVerify, lastRenewal
	l.mu.Unlock()
	l.inheritOrphans(from)
	l.failing.copyFrom(&from.failing)
}

// close stops the periodic maintenance.
func (l *lifecycle) close() {
	l.mu.Lock()
	defer l.mu.Unlock()
	l.closed = true
	if l.timer != nil {
		l.timer.Stop()
	}
}

// obtain returns usable credentials: the configured client, the stored
// registration, or a new or renewed one, which it stores. renewAt is when
// they need renewing (zero: never). prev is the client being renewed, or nil
// at first use.
func (l *lifecycle) obtain(ctx context.Context, disc *discovery, prev *client) (creds *credentials, renewAt time.Time, err error) {
	if l.cfg.ClientID != "" {
		return &credentials{Issuer: l.cfg.Issuer, ClientID: l.cfg.ClientID, ClientSecret: l.cfg.ClientSecret, Metadata: l.cfg.Metadata}, time.Time{}, nil
	}
	if disc.RegistrationEndpoint == "" {
		return nil, time.Time{}, errors.New("oidcrp: provider has no registration_endpoint and no ClientID is configured")
	}
	own, err := l.ownMetadata(ctx, disc)
	if err != nil {
		return nil, time.Time{}, err
	}
	// Register the URIs of every live replica sharing the store, not only ours.
	want, err := l.replicaMetadata(ctx, own, true)
	if err != nil {
		return nil, time.Time{}, err
	}
	fp := fingerprint(l.cfg.Issuer, want)

	stored, err := l.load(ctx)
	if err != nil {
		return nil, time.Time{}, err
	}
	if prev == nil {
		l.reviewIntent(ctx, false) // a registration a previous process lost
	}
	dead := "" // a stored client the provider no longer knows
	if l.usable(stored, fp) {
		if prev != nil {
			return stored, l.renewAt(stored), nil
		}
		// First use in this process: check the provider still knows the client.
		if cur, alive := l.checkRegistration(ctx, disc, stored); alive {
			return cur, l.renewAt(cur), nil
		}
		dead = stored.ClientID
	}

	// Exclude peers sharing the store while replacing the credentials, and
	// look again once excluded: a peer may have done it while we waited.
	if lk, ok := l.cfg.Store.(Locker); ok {
		unlock, err := lk.Lock(ctx, l.cfg.StoreKey)
		if err != nil {
			return nil, time.Time{}, fmt.Errorf("oidcrp: lock credential store: %w", err)
		}
		defer unlock()
		if stored, err = l.load(ctx); err != nil {
			return nil, time.Time{}, err
		}
		// A replica may have recorded its URIs while we waited.
		if want, err = l.replicaMetadata(ctx, own, false); err != nil {
			return nil, time.Time{}, err
		}
		fp = fingerprint(l.cfg.Issuer, want)
		if l.usable(stored, fp) && stored.ClientID != dead {
			return stored, l.renewAt(stored), nil
		}
	}

	if stored != nil && stored.ClientID == dead {
		stored = nil // nothing to renew or clean up at the provider
	}
	fresh, err := l.renew(ctx, disc, stored, want, fp)
	if err != nil {
		if stored != nil && stored.Fingerprint == fp && !stored.expiresWithin(l.now(), 0) && stored.Issuer == l.cfg.Issuer {
			// Renewal failed but the secret still works: keep it, try again soon.
			l.log.Warn("oidcrp: renewing client credentials failed; using the current ones", "client_id", stored.ClientID,
				"expires_at", stored.ClientSecretExpiresAt, "err", err)
			return stored, l.now().Add(renewRetry), nil
		}
		return nil, time.Time{}, err
	}
	if fresh.expiresWithin(l.now(), 0) {
		return nil, time.Time{}, &RegistrationError{Err: fmt.Errorf("the provider issued a client secret that expired at %s", fresh.ClientSecretExpiresAt.UTC().Format(time.RFC3339))}
	}
	if err := l.save(ctx, fresh); err != nil {
		if errors.Is(err, ErrLockLost) {
			// Our lease expired while we registered and a peer took over:
			// use the peer's client and withdraw ours.
			if other, lerr := l.load(ctx); lerr == nil && l.usable(other, fp) {
				if fresh.ClientID != other.ClientID && fresh.RegistrationClientURI != "" {
					l.deleteSuperseded(ctx, fresh)
				}
				l.clearIntent(ctx)
				return other, l.renewAt(other), nil
			}
		}
		// The provider issued them; losing them would orphan a client, so use
		// them in this process and report the store failure loudly.
		l.log.Error("oidcrp: storing client credentials failed; they live in this process only", "client_id", fresh.ClientID, "err", err)
		l.hold(fresh) // saved as soon as the store accepts writes again
	} else {
		l.settled(ctx, fresh)
	}
	l.cleanupSuperseded(ctx)
	return fresh, l.renewAt(fresh), nil
}

// usable reports whether stored credentials fit the current configuration
// and are not about to expire.
func (l *lifecycle) usable(c *credentials, fp string) bool {
	return c != nil && c.Issuer == l.cfg.Issuer && c.Fingerprint == fp && !c.expiresWithin(l.now(), l.margin(c))
}

// margin is how long before expiry a secret is renewed: RenewBefore, or
// half the secret's lifetime when that is shorter, so that a provider
// issuing short-lived secrets does not cause a registration per request.
func (l *lifecycle) margin(c *credentials) time.Duration {
	m := l.cfg.RenewBefore
	if !c.ClientSecretExpiresAt.IsZero() && !c.RegisteredAt.IsZero() {
		m = min(m, c.ClientSecretExpiresAt.Sub(c.RegisteredAt)/2)
	}
	return max(m, 0)
}

// renewAt is when c needs renewing (zero: never); never now or before, so
// that a provider issuing secrets already about to expire cannot cause a
// renewal per request.
func (l *lifecycle) renewAt(c *credentials) time.Time {
	if c.ClientSecretExpiresAt.IsZero() {
		return time.Time{}
	}
	at, now := c.ClientSecretExpiresAt.Add(-l.margin(c)), l.now()
	if !at.After(now) {
		at = now.Add(min(renewRetry, max(time.Second, c.ClientSecretExpiresAt.Sub(now)/2)))
	}
	return at
}

// renew renews stored credentials through RFC 7592 where it can (a changed
// configuration is updated in place, an expiring secret is read anew) and
// registers a new client otherwise. A registration it replaces, at this
// provider or at the one configured before, is deleted.
func (l *lifecycle) renew(ctx context.Context, disc *discovery, stored *credentials, want ClientMetadata, fp string) (*credentials, error) {
	g := l.registrar()
	latest := stored // the old registration as last seen: a read or update may rotate its token
	if stored != nil && stored.Issuer == l.cfg.Issuer && stored.RegistrationClientURI != "" {
		var c *credentials
		var err error
		op := "read"
		if stored.Fingerprint != fp {
			op = "update"
			c, err = l.traced(ctx, opRegistrationUpdate, stored.ClientID, func(ctx context.Context) (*credentials, error) {
				return g.update(ctx, stored, want)
			})
		} else {
			c, err = l.traced(ctx, opRegistrationRead, stored.ClientID, func(ctx context.Context) (*credentials, error) {
				return g.read(ctx, stored)
			})
		}
		if err == nil {
			latest = c
		}
		switch {
		case err == nil && !c.expiresWithin(l.now(), l.margin(c)):
			l.log.Info("oidcrp: client registration renewed", "op", op, "client_id", c.ClientID, "secret_expires_at", c.ClientSecretExpiresAt)
			return c, nil
		case err == nil && op == "read":
			// Still expiring: an update may issue a new secret (RFC 7592
			// §2.2), sent with the metadata as the provider returned it.
			c2, err2 := l.traced(ctx, opRegistrationUpdate, c.ClientID, func(ctx context.Context) (*credentials, error) {
				return g.update(ctx, c, c.Metadata)
			})
			if err2 == nil {
				c2.Fingerprint = fp
				latest = c2
				if !c2.expiresWithin(l.now(), l.margin(c2)) {
					l.log.Info("oidcrp: client registration renewed", "op", "update", "client_id", c2.ClientID, "secret_expires_at", c2.ClientSecretExpiresAt)
					return c2, nil
				}
				err2 = errors.New("the provider issued no fresher secret")
			}
			err = err2
		}
		l.log.Warn("oidcrp: renewing the registration failed; registering anew", "op", op, "client_id", stored.ClientID, "err", err)
	}
	abandon, err := l.intend(ctx, want, fp) // also checks that the store can keep the result
	if err != nil {
		return nil, err
	}
	start := l.now()
	c, err := l.traced(ctx, opRegistration, "", func(ctx context.Context) (*credentials, error) {
		return g.register(ctx, l.cfg.Issuer, disc.RegistrationEndpoint, string(l.cfg.InitialAccessToken), want)
	})
	if err != nil {
		abandon()
		// Debug: the failed setup is logged once per episode with this error.
		l.log.Debug("oidcrp: client registration failed", "err", err)
		return nil, err
	}
	l.log.Info("oidcrp: registered client", "client_id", c.ClientID, "auth_method", c.authMethod(),
		"secret_expires_at", c.ClientSecretExpiresAt, "duration", l.now().Sub(start))
	if latest != nil && latest.ClientID != c.ClientID && latest.RegistrationClientURI != "" {
		if latest.Issuer != l.cfg.Issuer {
			l.log.Info("oidcrp: the issuer changed; deleting the client registered at the previous one", "previous_issuer", latest.Issuer, "client_id", latest.ClientID)
		}
		l.deleteSuperseded(ctx, latest)
	}
	return c, nil
}

// deleteSuperseded removes a replaced registration at the provider so it is
// not left behind; a failure is recorded, to be retried by the periodic
// maintenance and the next registration.
func (l *lifecycle) deleteSuperseded(ctx context.Context, old *credentials) {
	ctx, cancel := context.WithTimeout(ctx, cleanupTimeout)
	defer cancel()
	ctx, end := l.trace.span(ctx, opRegistrationDelete, old.ClientID)
	err := l.registrar().remove(ctx, old)
	end(err)
	if err != nil {
		l.log.Warn("oidcrp: could not delete the superseded registration; recorded for later", "client_id", old.ClientID, "err", err)
		l.recordSuperseded(ctx, old)
		return
	}
	l.log.Info("oidcrp: deleted the superseded registration", "client_id", old.ClientID)
}

// supersededKey keeps replaced registrations not yet deleted at the provider.
func (l *lifecycle) supersededKey() string { return l.cfg.StoreKey + "#superseded" }

// recordSuperseded adds old to the registrations to delete later.
func (l *lifecycle) recordSuperseded(ctx context.Context, old *credentials) {
	list, _ := l.loadSuperseded(ctx)
	list = append(list, old)
	if err := l.saveSuperseded(ctx, list); err != nil {
		l.log.Error("oidcrp: recording a superseded registration failed; it may be left at the provider", "client_id", old.ClientID, "err", err)
	}
}

// cleanupSuperseded deletes recorded superseded registrations at the
// provider and forgets those that are gone.
func (l *lifecycle) cleanupSuperseded(ctx context.Context) {
	list, err := l.loadSuperseded(ctx)
	if err != nil || len(list) == 0 {
		return
	}
	var left []*credentials
	for _, old := range list {
		dctx, end := l.trace.span(ctx, opRegistrationDelete, old.ClientID)
		err := l.registrar().remove(dctx, old)
		end(err)
		if err != nil {
			left = append(left, old)
			continue
		}
		l.log.Info("oidcrp: deleted a superseded registration", "client_id", old.ClientID)
	}
	if err := l.saveSuperseded(ctx, left); err != nil {
		l.log.Warn("oidcrp: updating superseded registrations failed", "err", err)
	}
}

func (l *lifecycle) loadSuperseded(ctx context.Context) ([]*credentials, error) {
	b, err := l.cfg.Store.Load(ctx, l.supersededKey())
	if err != nil {
		return nil, err
	}
	var raw []json.RawMessage
	if err := json.Unmarshal(b, &raw); err != nil {
		return nil, fmt.Errorf("%w: superseded registrations: %v", ErrCorruptStore, err)
	}
	var list []*credentials
	for _, r := range raw {
		if c, err := decodeCredentials(r); err == nil {
			list = append(list, c)
		}
	}
	return list, nil
}

func (l *lifecycle) saveSuperseded(ctx context.Context, list []*credentials) error {
	if len(list) == 0 {
		return l.cfg.Store.Delete(ctx, l.supersededKey())
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
	return l.cfg.Store.Save(ctx, l.supersededKey(), b)
}

// traced runs a registration operation as a span.
func (l *lifecycle) traced(ctx context.Context, op, clientID string, fn func(context.Context) (*credentials, error)) (*credentials, error) {
	ctx, end := l.trace.span(ctx, op, clientID)
	c, err := fn(ctx)
	end(err)
	return c, err
}

func (l *lifecycle) registrar() registrar { return registrar{client: l.http, now: l.now} }

// load returns the stored credentials, or nil when there are none.
// Credentials found under the legacy key are moved to the current one.
func (l *lifecycle) load(ctx context.Context) (*credentials, error) {
	b, err := l.cfg.Store.Load(ctx, l.cfg.StoreKey)
	if errors.Is(err, ErrNotFound) && l.legacyKey != "" {
		if b, err = l.cfg.Store.Load(ctx, l.legacyKey); err == nil {
			if err := l.cfg.Store.Save(ctx, l.cfg.StoreKey, b); err != nil {
				return nil, fmt.Errorf("oidcrp: move credentials from %q: %w", l.legacyKey, err)
			}
			_ = l.cfg.Store.Delete(ctx, l.legacyKey)
			l.log.Info("oidcrp: moved client credentials to the current store key", "from", l.legacyKey, "to", l.cfg.StoreKey)
		}
	}
	if errors.Is(err, ErrNotFound) {
		return nil, nil
	}
	if err != nil {
		l.log.Error("oidcrp: loading client credentials failed", "key", l.cfg.StoreKey, "err", err)
		return nil, fmt.Errorf("oidcrp: load credentials: %w", err)
	}
	c, err := decodeCredentials(b)
	if err != nil {
		l.log.Error("oidcrp: stored client credentials are unreadable; fix or delete them", "key", l.cfg.StoreKey, "err", err)
		return nil, err
	}
	return c, nil
}

func (l *lifecycle) save(ctx context.Context, c *credentials) error {
	b, err := encodeCredentials(c)
	if err != nil {
		return err
	}
	return l.cfg.Store.Save(ctx, l.cfg.StoreKey, b)
}

// checkRegistration checks credentials against the provider, when the
// provider gives a way to: an RFC 7592 read, else a token request with a code
// that cannot exist, which a provider answers with invalid_grant for a known
// client and invalid_client for an unknown one. Only a clear "unknown client"
// reports the client gone. A read may rotate the secret or the registration
// access token (RFC 7592 §2.1): the new values are stored at once and
// returned.
func (l *lifecycle) checkRegistration(ctx context.Context, disc *discovery, c *credentials) (current *credentials, alive bool) {
	if c.RegistrationClientURI == "" {
		code, err := l.probeToken(ctx, disc, c)
		if err == nil && (code == "invalid_client" || code == "unauthorized_client") {
			l.log.Warn("oidcrp: the provider rejects the stored client", "client_id", c.ClientID, "error", code)
			return c, false
		}
		return c, true
	}
	// Reads may rotate the registration access token: replicas sharing the
	// store take turns, each with the token the previous one stored.
	unlock := l.lockStore(ctx)
	defer unlock()
	if stored, err := l.load(ctx); err == nil && stored != nil && stored.ClientID == c.ClientID {
		c = stored
	}
	fresh, err := l.traced(ctx, opRegistrationRead, c.ClientID, func(ctx context.Context) (*credentials, error) {
		return l.registrar().read(ctx, c)
	})
	var re *RegistrationError
	switch {
	case errors.As(err, &re) && re.StatusCode == http.StatusUnauthorized:
		l.log.Warn("oidcrp: the provider no longer knows the stored client", "client_id", c.ClientID)
		return c, false
	case err != nil:
		l.log.Warn("oidcrp: could not check the registration; assuming it stands", "client_id", c.ClientID, "err", err)
		return c, true
	}
	if fresh.ClientSecret != c.ClientSecret || fresh.RegistrationAccessToken != c.RegistrationAccessToken || fresh.RegistrationClientURI != c.RegistrationClientURI {
		if err := l.save(ctx, fresh); err != nil {
			l.log.Error("oidcrp: storing rotated client credentials failed; they live in this process only", "client_id", c.ClientID, "err", err)
			l.hold(fresh)
		} else {
			l.settled(ctx, fresh)
		}
	}
	return fresh, true
}

// lockStore takes the store's lock on the credentials, when the store has
// locks, and returns its release. A failure to lock is logged and the work
// goes on unlocked.
func (l *lifecycle) lockStore(ctx context.Context) (unlock func()) {
	lk, ok := l.cfg.Store.(Locker)
	if !ok {
		return func() {}
	}
	unlock, err := lk.Lock(ctx, l.cfg.StoreKey)
	if err != nil {
		l.log.Warn("oidcrp: could not lock the credential store", "err", err)
		return func() {}
	}
	return unlock
}

// probeToken sends a token request with a made-up code and returns the
// OAuth error code of the answer.
func (l *lifecycle) probeToken(ctx context.Context, disc *discovery, c *credentials) (string, error) {
	form := url.Values{"grant_type": {"authorization_code"}, "code": {"oidcrp-probe"}, "redirect_uri": {l.cfg.RedirectURL}}
	req, err := l.build(disc, l.cur.Load(), c, time.Time{}).authenticatedPost(ctx, disc.TokenEndpoint, form)
	if err != nil {
		return "", err
	}
	resp, err := l.http.Do(req)
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

// forget drops a client the provider no longer knows: the stored
// credentials (unless a peer already replaced them) and the client, so that
// the next request registers anew.
func (l *lifecycle) forget(ctx context.Context, c *client, refused *credentials) {
	// Only the credentials that were refused: a peer may have renewed them.
	unlock := l.lockStore(ctx)
	if stored, err := l.load(ctx); err == nil && stored != nil && stored.ClientID == refused.ClientID &&
		stored.RegistrationAccessToken == refused.RegistrationAccessToken && stored.ClientSecret == refused.ClientSecret {
		if err := l.cfg.Store.Delete(ctx, l.cfg.StoreKey); err != nil {
			l.log.Error("oidcrp: deleting rejected credentials failed", "err", err)
		}
	}
	unlock()
	next := *c
	next.renewAt, next.gone = l.now(), true // renew on next use, keeping the discovery
	l.cur.CompareAndSwap(c, &next)
	l.log.Warn("oidcrp: dropped a client the provider no longer knows; the next login registers anew", "client_id", c.creds.ClientID)
}

// reload replaces c's credentials with the stored ones if a peer changed
// them.
func (l *lifecycle) reload(ctx context.Context, c *client) bool {
	stored, err := l.load(ctx)
	if err != nil || stored == nil || (stored.ClientID == c.creds.ClientID && stored.ClientSecret == c.creds.ClientSecret &&
		slices.Equal(registeredKids(stored.Metadata.Extra["jwks"]), registeredKids(c.creds.Metadata.Extra["jwks"]))) {
		return false
	}
	return l.adopt(c, stored)
}

// adopt replaces client c by one with creds, unless c was replaced
// meanwhile.
func (l *lifecycle) adopt(c *client, creds *credentials) bool {
	return l.cur.CompareAndSwap(c, l.build(c.disc, c, creds, l.renewAt(creds)))
}

// decommission deletes the client registration at the provider (RFC 7592
// §2.3), superseded ones, the stored credentials and the relying party's
// stored keys.
func (l *lifecycle) decommission(ctx context.Context) error {
	if l.cfg.ClientID != "" {
		return errors.New("oidcrp: a client configured by hand cannot be decommissioned")
	}
	creds, err := l.load(ctx)
	if err != nil {
		return err
	}
	if c := l.cur.Load(); creds == nil && c != nil {
		creds = c.creds // registered, but the store lost it
	}
	var remoteErr error
	if creds != nil {
		if creds.RegistrationClientURI == "" {
			remoteErr = fmt.Errorf("oidcrp: client %s has no client configuration endpoint; delete it at the provider by hand", creds.ClientID)
		} else {
			dctx, end := l.trace.span(ctx, opRegistrationDelete, creds.ClientID)
			remoteErr = l.registrar().remove(dctx, creds)
			end(remoteErr)
			if remoteErr != nil {
				return fmt.Errorf("oidcrp: decommission: %w", remoteErr)
			}
		}
		l.log.Info("oidcrp: decommissioned client", "client_id", creds.ClientID)
	}
	l.cleanupSuperseded(ctx)
	if err := l.cfg.Store.Delete(ctx, l.cfg.StoreKey); err != nil {
		return fmt.Errorf("oidcrp: decommission: %w", err)
	}
	_ = l.cfg.Store.Delete(ctx, l.urisKey()) // the replicas' URIs went with the registration
	// The keys were registered with the client: no one is to use them again.
	if err := l.cfg.Store.Delete(ctx, l.keys.key); err != nil && !errors.Is(err, ErrNotFound) {
		return fmt.Errorf("oidcrp: decommission: delete the relying party's keys: %w", err)
	}
	l.keys.remember(nil)
	l.cur.Store(nil)
	return remoteErr
}

// status fills the registration part of a Status, without I/O.
func (l *lifecycle) status(s *Status) {
	if c := l.cur.Load(); c != nil {
		s.Ready = true
		s.ClientID, s.AuthMethod = c.creds.ClientID, c.creds.authMethod()
		s.RegisteredAt, s.SecretExpiresAt = c.creds.RegisteredAt, c.creds.ClientSecretExpiresAt
		if !s.SecretExpiresAt.IsZero() {
			if s.SecretExpiresIn = s.SecretExpiresAt.Sub(l.now()); s.SecretExpiresIn == 0 {
				s.SecretExpiresIn = -1 // expiring now; zero means never
			}
		}
	}
	if err := l.keyErr.Load(); err != nil {
		s.KeyError = (*err).Error()
	}
	l.mu.Lock()
	if l.lastErr != nil {
		s.LastError = l.lastErr.Error()
		s.RetryAt = l.retryAt
	}
	l.mu.Unlock()
}
