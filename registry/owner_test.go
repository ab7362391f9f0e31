package registry

import (
	"errors"
	"net/netip"
	"os"
	"path/filepath"
	"testing"
)

// register registers reg in its own Update.
func register(r *Registry, reg Registration) (string, error) {
	var id string
	_, err := r.Update(func(tx *Tx) error {
		var err error
		id, err = tx.Register(reg)
		return err
	})
	return id, err
}

func deregister(r *Registry, id, by string) error {
	_, err := r.Update(func(tx *Tx) error { return tx.Deregister(id, by) })
	return err
}

func student(name, service string, port int, addr string) Registration {
	return Registration{Owner: name, Service: service, Port: &port, Addresses: []netip.Addr{netip.MustParseAddr(addr)}}
}

func TestOwnership(t *testing.T) {
	r := New(1)
	alice, err := register(r, student("alice", "echo-alice", 4000, "127.0.0.2"))
	if err != nil {
		t.Fatal(err)
	}
	if inst, _ := r.Snapshot().Instance(alice); inst.Owner != "alice" {
		t.Errorf("owner %q, want alice", inst.Owner)
	}
	if h, _ := r.Snapshot().Host("h-127-0-0-2"); h.Owner != "alice" {
		t.Errorf("host owner %q, want alice", h.Owner)
	}

	t.Run("ErrNotOwner", func(t *testing.T) {
		// bob replaces alice's instance: the same endpoint, so the same ID.
		_, err := register(r, student("bob", "echo-alice", 4000, "127.0.0.2"))
		var oe *OwnerError
		if !errors.As(err, &oe) || !errors.Is(err, ErrNotOwner) || oe.Owner != "alice" || oe.By != "bob" {
			t.Errorf("bob over alice's instance: %v", err)
		}
		if err := deregister(r, alice, "bob"); !errors.Is(err, ErrNotOwner) {
			t.Errorf("bob deregisters alice's: %v", err)
		}
		if err := deregister(r, alice, "BOB"); !errors.Is(err, ErrNotOwner) {
			t.Errorf("BOB deregisters alice's: %v", err)
		}
		// bob moves alice's host to his address: her service with it.
		reg := student("bob", "echo-bob", 4001, "127.0.0.3")
		reg.Host = "h-127-0-0-2"
		if _, err := register(r, reg); !errors.Is(err, ErrNotOwner) || err.Error() != `host "h-127-0-0-2" belongs to alice, not to bob` {
			t.Errorf("bob moves alice's host: %v", err)
		}
		if inst, ok := r.Snapshot().Instance(alice); !ok || inst.Owner != "alice" {
			t.Errorf("alice's instance after bob's tries: %+v, %v", inst, ok)
		}
	})

	t.Run("Service", func(t *testing.T) {
		// bob's endpoint among alice's SRV records: refused, for him.
		_, err := register(r, student("bob", "echo-alice", 4002, "127.0.0.3"))
		if !errors.Is(err, ErrNotOwner) || err.Error() != `service "_echo-alice._tcp" belongs to alice, not to bob` {
			t.Errorf("bob joins alice's service: %v", err)
		}
		// Nor the administrator's.
		if _, err := register(r, student("", "echo", 7007, "127.0.0.1")); err != nil {
			t.Fatal(err)
		}
		if _, err := register(r, student("bob", "echo", 4002, "127.0.0.3")); !errors.Is(err, ErrNotOwner) {
			t.Errorf("bob joins the administrator's echo: %v", err)
		}
		// alice adds a second instance to her own; bob's service over
		// udp is another service.
		id, err := register(r, student("alice", "echo-alice", 4003, "127.0.0.2"))
		if err != nil {
			t.Errorf("alice's second instance: %v", err)
		}
		deregister(r, id, "alice")
		udp := student("bob", "echo-alice", 4002, "127.0.0.3")
		udp.Proto = "udp"
		id, err = register(r, udp)
		if err != nil {
			t.Errorf("bob's echo-alice over udp: %v", err)
		}
		deregister(r, id, "bob")
	})

	t.Run("SharedHost", func(t *testing.T) {
		// bob's server on alice's machine: the host as it is, still hers.
		id, err := register(r, student("bob", "echo-bob", 4001, "127.0.0.2"))
		if err != nil {
			t.Fatal(err)
		}
		if h, _ := r.Snapshot().Host("h-127-0-0-2"); h.Owner != "alice" {
			t.Errorf("host owner %q, want alice", h.Owner)
		}
		if err := deregister(r, id, "bob"); err != nil {
			t.Fatal(err)
		}
	})

	t.Run("Admin", func(t *testing.T) {
		// The administrator may change anything; a host stays its owner's.
		reg := student("", "echo-alice", 4000, "127.0.0.2")
		reg.TXT = TXT{"fixed=by the teacher"}
		id, err := register(r, reg)
		if err != nil || id != alice {
			t.Fatalf("admin over alice's: %s, %v", id, err)
		}
		inst, _ := r.Snapshot().Instance(alice)
		h, _ := r.Snapshot().Host("h-127-0-0-2")
		if inst.Owner != "" || h.Owner != "alice" {
			t.Errorf("instance owner %q (want the administrator), host owner %q (want alice)", inst.Owner, h.Owner)
		}
		if err := deregister(r, alice, "alice"); !errors.Is(err, ErrNotOwner) || err.Error() != `instance "`+alice+`" belongs to the administrator, not to alice` {
			t.Errorf("alice deregisters the administrator's: %v", err)
		}
		if err := deregister(r, alice, ""); err != nil {
			t.Errorf("the administrator deregisters: %v", err)
		}
	})
}

func TestQuota(t *testing.T) {
	r := New(1)
	reg := func(port int) error {
		reg := student("alice", "echo", port, "127.0.0.2")
		reg.MaxOwned = 2
		_, err := register(r, reg)
		return err
	}
	for _, port := range []int{4000, 4001, 4001} { // the third replaces the second
		if err := reg(port); err != nil {
			t.Fatal(err)
		}
	}
	err := reg(4002)
	var qe *QuotaError
	if !errors.As(err, &qe) || !errors.Is(err, ErrQuota) || err.Error() != "alice already holds 2 instances, the most its token may" {
		t.Errorf("third instance: %v", err)
	}
	if n := r.Snapshot().Owned("ALICE"); n != 2 {
		t.Errorf("Owned: %d, want 2", n)
	}
	// Others' instances do not count, and a deregistration frees a place.
	if _, err := register(r, student("bob", "echo-bob", 5000, "127.0.0.3")); err != nil {
		t.Fatal(err)
	}
	if _, err := register(r, student("", "http", 5001, "127.0.0.1")); err != nil {
		t.Fatal(err)
	}
	if err := deregister(r, "echo-tcp-h-127-0-0-2-4000", "alice"); err != nil {
		t.Fatal(err)
	}
	if err := reg(4002); err != nil {
		t.Errorf("after a deregistration: %v", err)
	}
	if n := r.Snapshot().Owned("alice"); n != 2 {
		t.Errorf("Owned: %d, want 2", n)
	}
}

// TestOwnershipDurable: owners are journaled with their rows, kept by a
// restart, a checkpoint and a replay, and counted again from them.
func TestOwnershipDurable(t *testing.T) {
	dir := t.TempDir()
	r := mustOpen(t, dir, Options{Serial: 1, SegmentSize: 2048})
	for i := range 12 { // several segments, and checkpoints
		if _, err := register(r, student("alice", "echo", 4000+i, "127.0.0.2")); err != nil {
			t.Fatal(err)
		}
	}
	if _, err := register(r, student("bob", "echo-bob", 5000, "127.0.0.3")); err != nil {
		t.Fatal(err)
	}
	r.Close()
	if _, err := os.Stat(filepath.Join(dir, "checkpoint")); err != nil {
		t.Fatalf("no checkpoint: %v", err)
	}
	r = mustOpen(t, dir, Options{})
	defer r.Close()
	s := r.Snapshot()
	if a, b := s.Owned("alice"), s.Owned("bob"); a != 12 || b != 1 {
		t.Errorf("after the restart alice holds %d, bob %d; want 12 and 1", a, b)
	}
	if h, _ := s.Host("h-127-0-0-3"); h.Owner != "bob" {
		t.Errorf("host owner %q, want bob", h.Owner)
	}
	if err := deregister(r, "echo-bob-tcp-h-127-0-0-3-5000", "alice"); !errors.Is(err, ErrNotOwner) {
		t.Errorf("alice deregisters bob's after the restart: %v", err)
	}
}

// TestOwnershipV1: rows journaled before owners are the administrator's.
func TestOwnershipV1(t *testing.T) {
	r, err := Open(copyDir(t, "testdata/v1"), Options{plainSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	for inst := range r.Snapshot().All() {
		if inst.Owner != "" {
			t.Fatalf("%s has owner %q", inst.ID, inst.Owner)
		}
	}
	if err := deregister(r, "echo-tcp-box-7005", "alice"); !errors.Is(err, ErrNotOwner) {
		t.Errorf("a student deregisters a v1 row: %v", err)
	}
	if err := deregister(r, "echo-tcp-box-7005", ""); err != nil {
		t.Errorf("the administrator deregisters a v1 row: %v", err)
	}
}

// TestCheckTarget: a student's registration checks one of its own
// addresses, never another host, a name or this machine's link-local
// neighbours (a check of 169.254.169.254 every 100 ms was accepted, its
// result readable by anyone); the administrator may check any name.
func TestCheckTarget(t *testing.T) {
	r := New(1)
	for _, tc := range []struct {
		owner, typ, target string
		ok                 bool
	}{
		{"alice", "tcp", "", true},
		{"alice", "tcp", "127.0.0.2:4000", true},
		{"alice", "http", "http://127.0.0.2:4000/health", true},
		{"alice", "tcp", "127.0.0.9:22", false},
		{"alice", "http", "http://169.254.169.254/latest/meta-data/", false},
		{"alice", "tcp", "db.example:5432", false},
		{"", "tcp", "db.example:5432", true},
		{"", "tcp", "127.0.0.9:22", true},
		{"", "http", "http://169.254.169.254/", false},
	} {
		reg := student(tc.owner, "svc", 4000, "127.0.0.2")
		reg.Check = &Check{Type: tc.typ, Target: tc.target}
		_, err := register(r, reg)
		var fe *FieldError
		if tc.ok != (err == nil) || err != nil && (!errors.As(err, &fe) || fe.Field != "check.target") {
			t.Errorf("%q checks %s %q: %v", tc.owner, tc.typ, tc.target, err)
		}
	}
}
