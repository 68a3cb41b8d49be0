package oidcrp

// How the relying party's keys (keys.go) reach the provider: the metadata
// they make possible, their publication (inline jwks updated through
// RFC 7592, or the set served at Config.JWKSURL) and their rotation.

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"slices"
)

// ownMetadata is the metadata this process registers: the configuration's
// (wantMetadata), completed with what the relying party's keys make
// possible (withKeys).
func (l *lifecycle) ownMetadata(ctx context.Context, disc *discovery) (ClientMetadata, error) {
	m, err := wantMetadata(l.cfg, disc, l.keys.own)
	if err != nil {
		return m, err
	}
	return l.withKeys(ctx, disc, m)
}

// withKeys completes the metadata to register with what the relying
// party's keys make possible, generating the keys on first use:
// token_endpoint_auth_signing_alg for private_key_jwt,
// request_object_signing_alg for request objects, the encryption of ID
// tokens and userinfo, and the public keys, inline
// (jwks) or as jwks_uri.
func (l *lifecycle) withKeys(ctx context.Context, disc *discovery, m ClientMetadata) (ClientMetadata, error) {
	var need []keyKind
	set := func(name, value string) {
		if m.Extra == nil {
			m.Extra = map[string]any{}
		}
		m.Extra[name] = value
	}
	if m.TokenEndpointAuthMethod == "private_key_jwt" {
		alg, _ := m.Extra["token_endpoint_auth_signing_alg"].(string)
		if alg == "" {
			if alg = pickSigningAlg(disc.TokenEndpointAuthSigningAlgValuesSupported, l.keys.own); alg == "" {
				return m, fmt.Errorf("oidcrp: provider %s accepts client assertions signed with %q only, which the relying party's key cannot make", disc.Issuer, disc.TokenEndpointAuthSigningAlgValuesSupported)
			}
		}
		set("token_endpoint_auth_signing_alg", alg)
		need = append(need, keyKind{"sig", alg})
	}
	if useJAR(l.cfg, disc) {
		alg := pickSigningAlg(disc.RequestObjectSigningAlgValuesSupported, l.keys.own)
		if alg == "" {
			return m, fmt.Errorf("oidcrp: provider %s accepts request objects signed with %q only, which the relying party's key cannot make", disc.Issuer, disc.RequestObjectSigningAlgValuesSupported)
		}
		set("request_object_signing_alg", alg)
		need = append(need, keyKind{"sig", alg})
	}
	for _, r := range []struct {
		name       string
		algs, encs []string
		used       bool
	}{
		{"id_token", disc.IDTokenEncryptionAlgValuesSupported, disc.IDTokenEncryptionEncValuesSupported, true},
		{"userinfo", disc.UserinfoEncryptionAlgValuesSupported, disc.UserinfoEncryptionEncValuesSupported, disc.UserinfoEndpoint != "" && !l.cfg.SkipUserInfo},
	} {
		algKey, encKey := r.name+"_encrypted_response_alg", r.name+"_encrypted_response_enc"
		alg, _ := m.Extra[algKey].(string)
		if alg == "" && l.cfg.EncryptedResponses && r.used {
			var enc string
			alg, enc = pickEncryption(r.algs, r.encs)
			if alg == "" && r.name == "id_token" {
				return m, fmt.Errorf("oidcrp: Config.EncryptedResponses is set but provider %s encrypts ID tokens with %q only; the relying party decrypts ECDH-ES, RSA-OAEP-256 and RSA-OAEP", disc.Issuer, r.algs)
			}
			if alg == "" {
				continue // this provider does not encrypt userinfo
			}
			set(algKey, alg)
			set(encKey, enc)
			if r.name == "userinfo" && m.UserinfoSignedResponseAlg == "" {
				// Signed, then encrypted (OIDC Core §5.3.2): the nested JWT
				// that OIDC DCR §2 describes, and that providers such as
				// oidc-provider require with userinfo encryption. Signed as
				// the ID tokens are, which every provider supports.
				m.UserinfoSignedResponseAlg = m.IDTokenSignedResponseAlg
				if m.UserinfoSignedResponseAlg == "" || m.UserinfoSignedResponseAlg == "none" {
					m.UserinfoSignedResponseAlg = "RS256"
				}
			}
		}
		if alg != "" {
			if !slices.Contains(decryptionAlgs, alg) {
				return m, fmt.Errorf("oidcrp: %s %q: the relying party decrypts %q only", algKey, alg, decryptionAlgs)
			}
			need = append(need, keyKind{"enc", alg})
		}
	}
	if len(need) == 0 {
		return m, nil
	}
	keys, err := l.keys.ensure(ctx, need)
	if err != nil {
		return m, fmt.Errorf("oidcrp: the relying party's keys: %w", err)
	}
	if l.cfg.JWKSURL != "" {
		set("jwks_uri", l.cfg.JWKSURL)
		delete(m.Extra, "jwks")
		return m, nil
	}
	jwks, err := jwksMetadata(keys)
	if err != nil {
		return m, err
	}
	m.Extra["jwks"] = jwks
	return m, nil
}

// decryptionAlgs are the key management algorithms the relying party
// decrypts, preferred first.
var decryptionAlgs = []string{"ECDH-ES", "RSA-OAEP-256", "RSA-OAEP"}

// pickEncryption picks how the provider is to encrypt a response, among
// the algorithms it supports: ECDH-ES, else RSA-OAEP-256, else RSA-OAEP,
// with A256GCM, else A128CBC-HS256 (the default of OIDC DCR §2). "" when
// none fits.
func pickEncryption(algs, encs []string) (alg, enc string) {
	for _, a := range decryptionAlgs {
		if slices.Contains(algs, a) {
			alg = a
			break
		}
	}
	enc = defaultEncryptionEnc
	if slices.Contains(encs, "A256GCM") {
		enc = "A256GCM"
	}
	if alg == "" {
		enc = ""
	}
	return alg, enc
}

// maintainKeys picks up keys and registrations a peer changed, rotates
// the relying party's keys when due (all of them, with force), publishes
// them, and retires those the publication superseded. It is run by the
// periodic maintenance and by [RP.RotateKeys]; it reports why new keys
// could not be published, if they could not.
func (l *lifecycle) maintainKeys(ctx context.Context, force bool) error {
	c := l.cur.Load()
	if c == nil || c.gone || l.cfg.ClientID != "" || len(l.keys.all()) == 0 {
		return nil // no keys in use: setup loads or makes them when needed
	}
	if err := l.keys.reload(ctx, 0); err != nil {
		return err
	}
	l.reload(ctx, c)
	if !l.keys.served && l.cur.Load().creds.RegistrationClientURI == "" {
		if force {
			return errors.New("oidcrp: the registration has no client configuration endpoint (RFC 7592), so new keys cannot be registered; set Config.JWKSURL to serve them")
		}
		return nil
	}
	published := func(k *rpKey) bool { return l.keys.published(k, l.cur.Load().creds) }
	for range 2 { // rotate and publish, then retire what the publication superseded
		if err := l.keys.rotate(ctx, force, published); err != nil {
			return err
		}
		force = false
		if err := l.publishKeys(ctx); err != nil {
			return err
		}
	}
	return nil
}

// publishKeys updates the registration (RFC 7592 §2.2) when its jwks is
// not the relying party's current key set. A provider that refuses keeps
// the registered keys, which stay in use; the error is logged, reported
// by Status and returned.
func (l *lifecycle) publishKeys(ctx context.Context) error {
	c := l.cur.Load()
	keys := l.keys.all()
	if l.keys.served || c == nil || len(keys) == 0 || slices.Equal(registeredKids(c.creds.Metadata.Extra["jwks"]), kids(keys)) {
		return nil
	}
	unlock := l.lockStore(ctx)
	defer unlock()
	stored, err := l.load(ctx)
	if err != nil || stored == nil || stored.ClientID != c.creds.ClientID {
		return err // being replaced: the new registration carries the keys
	}
	if slices.Equal(registeredKids(stored.Metadata.Extra["jwks"]), kids(keys)) {
		l.adopt(c, stored) // a peer published them
		return nil
	}
	jwks, err := jwksMetadata(keys)
	if err != nil {
		return err
	}
	want := stored.Metadata
	want.Extra = cloneMap(want.Extra)
	want.Extra["jwks"] = jwks
	fresh, err := l.traced(ctx, opRegistrationUpdate, stored.ClientID, func(ctx context.Context) (*credentials, error) {
		return l.registrar().update(ctx, stored, want)
	})
	if err == nil {
		if _, echoed := fresh.Metadata.Extra["jwks"]; !echoed {
			fresh.Metadata.Extra = cloneMap(fresh.Metadata.Extra)
			if fresh.Metadata.Extra == nil {
				fresh.Metadata.Extra = map[string]any{}
			}
			fresh.Metadata.Extra["jwks"] = jwks // RFC 7591 §3.2.1: what is not returned was kept
		} else if !slices.Equal(registeredKids(fresh.Metadata.Extra["jwks"]), kids(keys)) {
			err = errors.New("the registration returned holds other keys")
		}
	}
	if err != nil {
		err = fmt.Errorf("oidcrp: the provider refused the relying party's new keys; the registered ones stay in use: %w", err)
		l.log.Error("oidcrp: publishing the relying party's keys failed", "client_id", stored.ClientID, "kids", kids(keys), "err", err)
		l.keyErr.Store(&err)
		return err
	}
	fresh.Fingerprint = stored.Fingerprint
	if err := l.save(ctx, fresh); err != nil {
		l.log.Error("oidcrp: storing the registration with the relying party's new keys failed; it lives in this process only", "client_id", fresh.ClientID, "err", err)
		l.hold(fresh)
	}
	l.keyErr.Store(nil)
	l.adopt(c, fresh)
	l.log.Info("oidcrp: registered the relying party's keys", "client_id", fresh.ClientID, "kids", kids(keys))
	return nil
}

// RotateKeys gives each of the relying party's generated keys a successor
// now, as Config.KeyRotation does on its schedule, for a key that may have
// been exposed: the successor is published (an RFC 7592 update of the
// registration, or the set served at Config.JWKSURL), used once published,
// and the old key stays published two hours more. An error says why the
// new keys could not be published; the registered ones then stay in use.
// The application's own key (Config.SigningKey) is not rotated.
func (rp *RP) RotateKeys(ctx context.Context) error {
	if _, err := rp.lc.client(ctx); err != nil {
		return err
	}
	if !rp.lc.keys.generated() {
		return errors.New("oidcrp: the relying party uses no key of its own making (neither private_key_jwt, request objects nor encrypted responses)")
	}
	return rp.lc.maintainKeys(ctx, true)
}

// JWKSHandler serves the relying party's public keys as a JWK Set
// (RFC 7517 §5): the set registered as jwks_uri when Config.JWKSURL is set,
// which the middleware also answers at that URL's path. Private parts never
// leave the store.
func (rp *RP) JWKSHandler() http.Handler { return http.HandlerFunc(rp.serveJWKS) }

func (rp *RP) serveJWKS(w http.ResponseWriter, r *http.Request) {
	if r.Method != http.MethodGet && r.Method != http.MethodHead {
		w.Header().Set("Allow", "GET, HEAD")
		http.Error(w, "method not allowed", http.StatusMethodNotAllowed)
		return
	}
	if err := rp.lc.keys.reload(r.Context(), keysReloadEvery); err != nil {
		rp.log.Error("oidcrp: serving the relying party's keys failed", "err", err)
		http.Error(w, "keys unavailable", http.StatusServiceUnavailable)
		return
	}
	b, err := json.Marshal(publicSet(rp.lc.keys.all()))
	if err != nil {
		http.Error(w, "keys unavailable", http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/jwk-set+json")
	w.Header().Set("Cache-Control", "public, max-age=300")
	w.Write(b)
}
