package oidcrp

import (
	"context"
	"encoding/json"
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
	var j map[string]any
	b, _ := json.Marshal(s)
	if err := json.Unmarshal(b, &j); err != nil {
		t.Fatal(err)
	}
	if v, ok := j["secret_expires_in"].(float64); !ok || v < 90*60-5 || v > 90*60 {
		t.Errorf("JSON secret_expires_in %v, want about %d seconds: %s", j["secret_expires_in"], 90*60, b)
	}
	if _, ok := j["secret_expires_at"]; !ok {
		t.Errorf("JSON lacks secret_expires_at: %s", b)
	}

	never := newEnv(t, devop.Options{}, Config{})
	if err := never.rp.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	s = never.rp.Status()
	b, _ = json.Marshal(s)
	if s.SecretExpiresIn != 0 || !s.SecretExpiresAt.IsZero() {
		t.Errorf("never-expiring secret: SecretExpiresIn %v, SecretExpiresAt %v, want zero", s.SecretExpiresIn, s.SecretExpiresAt)
	}
	j = nil
	json.Unmarshal(b, &j)
	if _, ok := j["secret_expires_in"]; ok {
		t.Errorf("JSON of a never-expiring secret has secret_expires_in: %s", b)
	}
}
