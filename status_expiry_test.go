package oidcrp

import (
	"context"
	"testing"
	"time"

	"github.com/oidcrp/oidcrp/internal/devop"
)

func TestStatusSecretExpiresIn(t *testing.T) {
	e := newEnv(t, devop.Options{SecretLifetime: 2 * time.Hour}, Config{})
	if s := e.rp.Status(); s.SecretExpiresIn != 0 {
		t.Errorf("before setup: SecretExpiresIn %v, want 0", s.SecretExpiresIn)
	}
	if err := e.rp.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	e.clock.Advance(30 * time.Minute)
	before := e.clock.Now()
	s := e.rp.Status()
	if want := s.SecretExpiresAt.Sub(before); s.SecretExpiresIn <= 0 || s.SecretExpiresIn > want || want-s.SecretExpiresIn > time.Second {
		t.Errorf("SecretExpiresIn %v, want about %v (expires at %v)", s.SecretExpiresIn, want, s.SecretExpiresAt)
	}
	if d := s.SecretExpiresIn - 90*time.Minute; d < -5*time.Second || d > 5*time.Second {
		t.Errorf("SecretExpiresIn %v, want about 1h30m", s.SecretExpiresIn)
	}
	never := newEnv(t, devop.Options{}, Config{})
	if err := never.rp.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = never.rp.Status()
	if s.SecretExpiresIn != 0 || !s.SecretExpiresAt.IsZero() {
		t.Errorf("never-expiring secret: SecretExpiresIn %v, SecretExpiresAt %v, want zero", s.SecretExpiresIn, s.SecretExpiresAt)
	}
}
