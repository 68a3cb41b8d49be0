package oidcrp

import (
	"context"
	"testing"

	"github.com/oidcrp/oidcrp/internal/devop"
)

// TestIssuerChangeDeletesPreviousClient: an application moved to another
// provider deletes the client it had registered at the previous one.
func TestIssuerChangeDeletesPreviousClient(t *testing.T) {
	t.Parallel()
	store := new(MemoryStore)
	e := newEnv(t, devop.Options{}, Config{Store: store})
	e.login("/")
	old := e.rp.Status().ClientID
	next, _ := newOP(t, devop.Options{AutoLogin: true, Now: e.clock.Now})
	moved := e.newRP(Config{Store: store, Issuer: next.Issuer()})
	if err := moved.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	if left := e.op.Clients(); len(left) != 0 {
		t.Errorf("client %s left at the previous issuer: %+v", old, left)
	}
	if s := e.op.Stats(); s.RegistrationDelete != 1 {
		t.Errorf("deletions at the previous issuer: %d, want 1", s.RegistrationDelete)
	}
	if got := next.Clients(); len(got) != 1 || got[0].ID != moved.Status().ClientID {
		t.Errorf("clients at the new issuer: %+v", got)
	}
	if list, _ := moved.lc.loadSuperseded(context.Background()); len(list) != 0 {
		t.Errorf("%d superseded registrations still recorded", len(list))
	}
}

// TestMaintenanceDeletesSupersededClients: a superseded registration whose
// deletion failed is retried by the periodic maintenance, not only at the
// next registration, even while the application is idle.
func TestMaintenanceDeletesSupersededClients(t *testing.T) {
	t.Parallel()
	e := newEnv(t, devop.Options{}, Config{})
	if err := e.rp.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	other := e.newRP(Config{Store: new(MemoryStore)})
	if err := other.Ready(context.Background()); err != nil {
		t.Fatal(err)
	}
	orphan := other.lc.cur.Load().creds
	e.rp.lc.recordSuperseded(context.Background(), orphan)
	e.rp.lc.used.Store(false) // idle since the last tick
	e.rp.lc.tick()
	for _, c := range e.op.Clients() {
		if c.ID == orphan.ClientID {
			t.Fatalf("superseded client %s not deleted by the maintenance", c.ID)
		}
	}
	if list, _ := e.rp.lc.loadSuperseded(context.Background()); len(list) != 0 {
		t.Errorf("%d superseded registrations still recorded", len(list))
	}
	if s := e.op.Stats(); s.RegistrationRead != 0 {
		t.Errorf("an idle client was checked: %d registration reads", s.RegistrationRead)
	}
}
