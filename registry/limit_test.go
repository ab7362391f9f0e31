package registry

import (
	"errors"
	"log/slog"
	"testing"
)

// TestMaxInstances: past Registry.MaxInstances a registration is refused
// with a *LimitError; a replacement, a registration in a Tx that made room
// and the server's hosted services are not; a deregistration makes room.
func TestMaxInstances(t *testing.T) {
	r := New(1)
	r.MaxInstances = 3
	for _, port := range []int{4000, 4001, 4002} {
		if _, err := register(r, student("", "echo", port, "127.0.0.2")); err != nil {
			t.Fatal(err)
		}
	}
	before := r.Snapshot().Serial()
	_, err := register(r, student("", "echo", 4003, "127.0.0.2"))
	var le *LimitError
	if !errors.As(err, &le) || !errors.Is(err, ErrTooMany) || le.Max != 3 || le.Held != 3 ||
		err.Error() != "the directory holds 3 instances, the most it may: deregister some first" {
		t.Fatalf("a fourth instance: %v", err)
	}
	if s := r.Snapshot(); s.Serial() != before || s.NumInstances() != 3 || countInstances(s) != 3 {
		t.Errorf("a refused registration changed the registry: serial %d (was %d), %d instances", s.Serial(), before, countInstances(s))
	}

	t.Run("Replace", func(t *testing.T) {
		reg := student("", "echo", 4001, "127.0.0.2")
		reg.TXT = TXT{"v=2"}
		if _, err := register(r, reg); err != nil {
			t.Errorf("a re-registration at the cap: %v", err)
		}
	})
	t.Run("SameTx", func(t *testing.T) {
		_, err := r.Update(func(tx *Tx) error {
			if err := tx.Deregister("echo-tcp-h-127-0-0-2-4002", ""); err != nil {
				return err
			}
			_, err := tx.Register(student("", "echo", 4004, "127.0.0.2"))
			return err
		})
		if err != nil {
			t.Errorf("a registration after a deregistration in one Tx: %v", err)
		}
	})
	t.Run("Hosted", func(t *testing.T) {
		reg := student("", "daytime", 1313, "127.0.0.1")
		reg.Hosted = true
		if _, err := register(r, reg); err != nil {
			t.Errorf("a hosted service at the cap: %v", err)
		}
		if n := r.Snapshot().NumInstances(); n != 4 {
			t.Errorf("NumInstances %d, want 4", n)
		}
		if _, err := register(r, student("", "echo", 4005, "127.0.0.2")); !errors.Is(err, ErrTooMany) {
			t.Errorf("past the cap with a hosted service: %v", err)
		}
	})
	t.Run("Deregister", func(t *testing.T) {
		for _, id := range []string{"echo-tcp-h-127-0-0-2-4000", "daytime-tcp-h-127-0-0-1-1313"} {
			if err := r.Deregister(id); err != nil {
				t.Fatal(err)
			}
		}
		if _, err := register(r, student("", "echo", 4005, "127.0.0.2")); err != nil {
			t.Errorf("after deregistrations: %v", err)
		}
	})
	t.Run("Unlimited", func(t *testing.T) {
		r.MaxInstances = 0
		for port := 5000; port < 5010; port++ {
			if _, err := register(r, student("", "echo", port, "127.0.0.3")); err != nil {
				t.Fatal(err)
			}
		}
		if s := r.Snapshot(); s.NumInstances() != 13 || countInstances(s) != 13 {
			t.Errorf("NumInstances %d, %d rows; want 13", s.NumInstances(), countInstances(s))
		}
	})
}

// TestMaxInstancesLowered: a cap never drops data. A directory that
// holds more than its cap (lowered since) loads every instance, and
// refuses new ones; the count is rebuilt from a checkpoint and the
// segments after it.
func TestMaxInstancesLowered(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Serial: 1, SegmentSize: 2048, Logger: slog.New(slog.DiscardHandler)}
	r := mustOpen(t, dir, opts)
	for i := range 30 { // several segments, and checkpoints
		if _, err := register(r, student("", "echo", 4000+i, "127.0.0.2")); err != nil {
			t.Fatal(err)
		}
	}
	if err := r.Deregister("echo-tcp-h-127-0-0-2-4000"); err != nil {
		t.Fatal(err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	r = mustOpen(t, dir, opts)
	defer r.Close()
	r.MaxInstances = 10
	if s := r.Snapshot(); s.NumInstances() != 29 || countInstances(s) != 29 {
		t.Fatalf("restored NumInstances %d, %d rows; want 29", s.NumInstances(), countInstances(s))
	}
	_, err := register(r, student("", "echo", 5000, "127.0.0.2"))
	if want := "the directory holds 29 instances, past its limit of 10: deregister some first"; !errors.Is(err, ErrTooMany) || err.Error() != want {
		t.Errorf("a new instance past a lowered cap: %v, want %q", err, want)
	}
	if _, err := register(r, student("", "echo", 4001, "127.0.0.2")); err != nil {
		t.Errorf("a re-registration past a lowered cap: %v", err)
	}
	if n := r.Snapshot().NumInstances(); n != 29 {
		t.Errorf("NumInstances %d, want 29", n)
	}
}
