package registry

import (
	"errors"
	"fmt"
	"testing"
	"time"
)

// TestUseOnce: a mark refuses a second use, in the same run and after a
// restart, whether it came with a change or alone (then the serial stays),
// and through a checkpoint; a failed update marks nothing; an expired mark
// is gone.
func TestUseOnce(t *testing.T) {
	dir := t.TempDir()
	// A small segment, so that the registry checkpoints and drops the
	// segments holding the first marks.
	r := mustOpen(t, dir, Options{Serial: 10, SegmentSize: 300})
	soon := time.Now().Add(time.Hour)
	use := func(r *Registry, id string, change bool) error {
		_, err := r.Update(func(tx *Tx) error {
			if err := tx.UseOnce(id, soon); err != nil {
				return err
			}
			if change {
				_, err := tx.PutInstance(echoInstance(len(id)))
				return err
			}
			return nil
		})
		return err
	}
	if err := use(r, "with-change", true); err != nil {
		t.Fatal(err)
	}
	serial := r.Snapshot().Serial()
	if err := use(r, "alone", false); err != nil {
		t.Fatal(err)
	}
	if got := r.Snapshot().Serial(); got != serial {
		t.Errorf("a mark alone moved the serial from %d to %d", serial, got)
	}
	_, err := r.Update(func(tx *Tx) error {
		if err := tx.UseOnce("failed", soon); err != nil {
			return err
		}
		return errors.New("refused")
	})
	if err == nil {
		t.Fatal("the failing update succeeded")
	}
	if _, err := r.Update(func(tx *Tx) error { return tx.UseOnce("expired", time.Now().Add(-time.Second)) }); err != nil {
		t.Fatal(err)
	}
	for i := range 20 { // enough records to rotate segments
		if err := use(r, fmt.Sprintf("filler-%d", i), i%2 == 0); err != nil {
			t.Fatal(err)
		}
	}
	check := func(r *Registry, when string) {
		t.Helper()
		for _, id := range []string{"with-change", "alone", "filler-0", "filler-19"} {
			if err := use(r, id, false); !errors.Is(err, ErrReplay) {
				t.Errorf("%s: second use of %q: %v, want ErrReplay", when, id, err)
			}
		}
		for _, id := range []string{"failed", "expired"} {
			if err := use(r, id, false); err != nil {
				t.Errorf("%s: first use of %q (failed or expired before): %v", when, id, err)
			}
		}
	}
	check(r, "same run")
	serial = r.Snapshot().Serial()
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	if segs, _ := listSegments(dir); len(segs) == 0 || segs[0] == 1 {
		t.Fatalf("segments %v: the first marks must be in a checkpoint only", segs)
	}
	r = mustOpen(t, dir, Options{})
	defer r.Close()
	if got := r.Snapshot().Serial(); got != serial {
		t.Errorf("serial after restart %d, want %d", got, serial)
	}
	for _, id := range []string{"failed", "expired"} {
		if err := use(r, id, false); !errors.Is(err, ErrReplay) {
			t.Errorf("after restart: %q used in the run before: %v, want ErrReplay", id, err)
		}
	}
	for _, id := range []string{"with-change", "alone", "filler-0", "filler-19"} {
		if err := use(r, id, false); !errors.Is(err, ErrReplay) {
			t.Errorf("after restart: second use of %q: %v, want ErrReplay", id, err)
		}
	}
}

// TestUseOnceInMemory: a registry made by New marks too, in memory.
func TestUseOnceInMemory(t *testing.T) {
	r := New(1)
	mark := func() error {
		_, err := r.Update(func(tx *Tx) error { return tx.UseOnce("x", time.Now().Add(time.Minute)) })
		return err
	}
	if err := mark(); err != nil {
		t.Fatal(err)
	}
	if err := mark(); !errors.Is(err, ErrReplay) {
		t.Fatalf("second use: %v", err)
	}
}
