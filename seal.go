package oidcrp

import (
	"context"
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"
)

// sealer encrypts and authenticates cookie values with AES-256-GCM. The
// cookie's name and purpose are additional data, so a value cannot be moved
// to another cookie.
type sealer struct {
	aeads []cipher.AEAD // the first seals; all open
}

func newSealer(keys [][]byte) (*sealer, error) {
	s := &sealer{}
	for _, k := range keys {
		mac := hmac.New(sha256.New, k)
		mac.Write([]byte("oidcrp cookie key v1"))
		block, err := aes.NewCipher(mac.Sum(nil))
		if err != nil {
			return nil, err
		}
		aead, err := cipher.NewGCM(block)
		if err != nil {
			return nil, err
		}
		s.aeads = append(s.aeads, aead)
	}
	if len(s.aeads) == 0 {
		return nil, errors.New("oidcrp: no session keys")
	}
	return s, nil
}

func (s *sealer) seal(purpose, name string, plaintext []byte) string {
	aead := s.aeads[0]
	buf := make([]byte, aead.NonceSize(), aead.NonceSize()+len(plaintext)+aead.Overhead())
	rand.Read(buf)
	out := aead.Seal(buf, buf, plaintext, additionalData(purpose, name))
	return base64.RawURLEncoding.EncodeToString(out)
}

func (s *sealer) open(purpose, name, value string) ([]byte, error) {
	raw, err := base64.RawURLEncoding.DecodeString(value)
	if err != nil {
		return nil, errors.New("not base64url")
	}
	ad := additionalData(purpose, name)
	for _, aead := range s.aeads {
		n := aead.NonceSize()
		if len(raw) < n+aead.Overhead() {
			return nil, errors.New("too short")
		}
		if pt, err := aead.Open(nil, raw[:n], raw[n:], ad); err == nil {
			return pt, nil
		}
	}
	return nil, errors.New("does not authenticate")
}

func additionalData(purpose, name string) []byte {
	return []byte(purpose + "\x00" + name)
}

// sessionKeysKey is where generated session keys are kept in the store.
const sessionKeysKey = "oidcrp:session-keys"

// keyring loads the cookie keys on first use and keeps the sealer. Tenants
// share one.
type keyring struct {
	s       atomic.Pointer[sealer]
	loading inflight[struct{}, *sealer]
	keys    []Secret // configured keys; none: generated and kept in store
	store   CredentialStore
	log     *slog.Logger
	failing episode // failed loads, logged once per outage
}

// sealer returns the cookie sealer, loading or generating the session keys
// on first use.
func (k *keyring) sealer(ctx context.Context) (*sealer, error) {
	if s := k.s.Load(); s != nil {
		return s, nil
	}
	s, err, _ := k.loading.do(ctx, struct{}{}, func(ctx context.Context) (*sealer, error) {
		if s := k.s.Load(); s != nil {
			return s, nil
		}
		keys := make([][]byte, len(k.keys))
		for i, key := range k.keys {
			keys[i] = []byte(key)
		}
		if len(keys) == 0 {
			var err error
			if keys, err = k.shared(ctx); err != nil {
				k.failing.failed(k.log, slog.LevelError, time.Now(), "oidcrp: session keys unavailable", err)
				return nil, &unavailableError{cause: err, retryAfter: time.Second}
			}
			k.failing.ended(k.log, time.Now(), "oidcrp: session keys available again")
		}
		s, err := newSealer(keys)
		if err != nil {
			return nil, err
		}
		k.s.Store(s)
		return s, nil
	})
	return s, err
}

// shared loads the session keys kept in the store, generating and storing
// one if there is none.
func (k *keyring) shared(ctx context.Context) ([][]byte, error) {
	load := func() ([][]byte, error) {
		b, err := k.store.Load(ctx, sessionKeysKey)
		if err != nil {
			return nil, err
		}
		var keys [][]byte
		if err := json.Unmarshal(b, &keys); err != nil || len(keys) == 0 || len(keys[0]) < 32 {
			return nil, fmt.Errorf("%w: session keys under %q", ErrCorruptStore, sessionKeysKey)
		}
		return keys, nil
	}
	keys, err := load()
	if !errors.Is(err, ErrNotFound) {
		return keys, err
	}
	if l, ok := k.store.(Locker); ok {
		unlock, err := l.Lock(ctx, sessionKeysKey)
		if err != nil {
			return nil, err
		}
		defer unlock()
		if keys, err = load(); !errors.Is(err, ErrNotFound) {
			return keys, err
		}
	}
	key := make([]byte, 32)
	rand.Read(key)
	b, _ := json.Marshal([][]byte{key})
	if err := k.store.Save(ctx, sessionKeysKey, b); err != nil {
		return nil, fmt.Errorf("oidcrp: save session keys: %w", err)
	}
	k.log.Info("oidcrp: generated session keys and stored them", "key", sessionKeysKey)
	return [][]byte{key}, nil
}
