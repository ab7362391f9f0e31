package registry

import (
	"errors"
	"log/slog"
	"net/netip"
	"testing"
)

// TestAutoHostRefCount checks that an automatic host goes with the last
// instance that targets it, and not before, also after a restart (the
// counts are rebuilt from the journal) and after an aborted Update.
func TestAutoHostRefCount(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Logger: slog.New(slog.DiscardHandler)}
	r := mustOpen(t, dir, opts)
	box := &Host{Name: "Box", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.9")}, Auto: true}
	a := mustRegister(t, r, Instance{Service: "echo", Host: "box", Port: 7}, box)
	b := mustRegister(t, r, Instance{Service: "http", Host: "BOX", Port: 80}, nil)
	mustRegister(t, r, Instance{Service: "echo", Host: "other", Port: 7}, nil)
	if n := len(collect(r.Snapshot().OnHost("Box"))); n != 2 {
		t.Fatalf("OnHost = %d instances, want 2", n)
	}
	boom := errors.New("boom")
	if _, err := r.Update(func(tx *Tx) error {
		if err := tx.DeleteInstance(a); err != nil {
			return err
		}
		if err := tx.DeleteInstance(b); err != nil {
			return err
		}
		if _, ok := tx.Host("box"); ok {
			t.Error("host still there inside the Tx after its last instance went")
		}
		if _, ok := tx.Type("tcp", "http"); ok {
			t.Error("type still counted inside the Tx after its last instance went")
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	r = mustOpen(t, dir, opts)
	defer r.Close()
	if err := r.Deregister(a); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Snapshot().Host("box"); !ok {
		t.Fatal("host collected while an instance still targets it")
	}
	if err := r.Deregister(b); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Snapshot().Host("box"); ok {
		t.Fatal("automatic host kept after its last instance went")
	}
	if st, ok := r.Snapshot().Type("tcp", "echo"); !ok || st.Instances != 1 || st.Healthy != 1 {
		t.Fatalf("type echo = %+v, %v; want 1 instance", st, ok)
	}
}

func collect[T any](seq func(func(T) bool)) []T {
	var out []T
	for v := range seq {
		out = append(out, v)
	}
	return out
}
