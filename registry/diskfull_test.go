package registry

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"os"
	"sync"
	"syscall"
	"testing"
	"time"
)

// fakeDisk stands for the disk under a journal's segments (Options.writeAt):
// when full, a write that reaches past a file's length writes what fits
// and fails with ENOSPC, as the kernel does, while one over the zeros the
// file already holds succeeds; syncErr makes fdatasync fail.
type fakeDisk struct {
	mu      sync.Mutex
	full    bool
	syncErr error
	fails   int // writes refused for lack of space
}

func (d *fakeDisk) set(full bool, syncErr error) {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.full, d.syncErr = full, syncErr
}

func (d *fakeDisk) failed() int {
	d.mu.Lock()
	defer d.mu.Unlock()
	return d.fails
}

func (d *fakeDisk) writeAt(f *os.File, buf []byte, off int64) error {
	d.mu.Lock()
	full, syncErr := d.full, d.syncErr
	d.mu.Unlock()
	if full {
		st, err := f.Stat()
		if err != nil {
			return err
		}
		if end := off + int64(len(buf)); end > st.Size() {
			if n := st.Size() - off; n > 0 {
				f.WriteAt(buf[:n], off)
			}
			d.mu.Lock()
			d.fails++
			d.mu.Unlock()
			return &os.PathError{Op: "write", Path: f.Name(), Err: syscall.ENOSPC}
		}
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		return err
	}
	if syncErr != nil {
		return &syncError{syncErr}
	}
	return nil
}

// deadline polls cond every 10 ms until it holds or d passes.
func within(d time.Duration, cond func() bool) bool {
	for end := time.Now().Add(d); time.Now().Before(end); time.Sleep(10 * time.Millisecond) {
		if cond() {
			return true
		}
	}
	return cond()
}

func healthOf(r *Registry, id string) Health {
	inst, ok := r.Snapshot().Instance(id)
	if !ok {
		return 0
	}
	return inst.Health
}

// fillJournal registers instances until the disk refuses one: the zeros
// written ahead of frames absorb the first writes after the disk fills.
func fillJournal(t *testing.T, r *Registry, disk *fakeDisk) {
	t.Helper()
	for i := 0; disk.failed() == 0; i++ {
		if i == 5000 {
			t.Fatal("5000 registrations and the full disk refused none")
		}
		if _, err := r.Register(echoInstance(10000+i), nil); err != nil {
			if !errors.Is(err, ErrFull) || !errors.Is(err, syscall.ENOSPC) {
				t.Fatalf("a write on a full disk: %v, want an error wrapping ErrFull and ENOSPC", err)
			}
			return
		}
	}
	t.Fatal("the disk refused a write, Register did not say so")
}

// TestDiskFull is issue 18's full disk: health changes that cannot be
// journaled must still reach what DNS serves within a check interval,
// registrations are refused with a clear error and change nothing, and
// once space returns writes resume by themselves: the health changes
// served from memory are written, in order, and survive a restart.
func TestDiskFull(t *testing.T) {
	disk := &fakeDisk{}
	dir := t.TempDir()
	var logs logBuffer
	r := mustOpen(t, dir, Options{Serial: 1, Logger: slog.New(slog.NewTextHandler(&logs, nil)), writeAt: disk.writeAt})
	defer r.Close()

	const iv = 100 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	id := mustRegister(t, r, Instance{Service: "echo", Host: "a", Port: 7,
		Check: &Check{Type: "tcp", Target: addr, Interval: Duration(iv)}}, nil)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	checker := &Checker{Registry: r, Logger: r.log}
	go checker.Run(ctx)

	disk.set(true, nil)
	fillJournal(t, r, disk)
	before := r.Snapshot().Serial()
	n := countInstances(r.Snapshot())

	// Full: the instance dies and leaves what DNS serves within its
	// interval (and a check's timeout, the interval too).
	ln.Close()
	if !within(3*iv, func() bool { return healthOf(r, id) == Critical }) {
		t.Fatalf("disk full: instance still %s %v after it died:\n%s", healthOf(r, id), 3*iv, logs.String())
	}
	if s := r.Snapshot().Serial(); !SerialLess(before, s) {
		t.Errorf("the health change did not move the serial (%d, then %d): secondaries would not see it", before, s)
	}
	if sets, ok := r.History(before); !ok || len(sets) == 0 || len(sets[len(sets)-1].Changes) != 1 {
		t.Errorf("History(%d) = %v, %v: an IXFR would not carry the health change", before, sets, ok)
	}
	if _, err := r.Register(echoInstance(99999), nil); !errors.Is(err, ErrFull) {
		t.Errorf("a registration on a full disk: %v, want ErrFull", err)
	}
	if got := countInstances(r.Snapshot()); got != n {
		t.Errorf("a refused registration changed the registry: %d instances, want %d", got, n)
	}
	if got := r.Snapshot().NumInstances(); got != n { // rolled back with the rows (limit.go)
		t.Errorf("NumInstances %d after refused registrations, want %d", got, n)
	}

	// Freed: writes resume by themselves, and the instance comes back
	// and leaves again within its interval.
	disk.set(false, nil)
	if !within(3*time.Second, func() bool { return r.JournalError() == nil }) {
		t.Fatalf("writes did not resume after space returned: %v", r.JournalError())
	}
	mustRegister(t, r, echoInstance(99999), nil)
	ln2, err := net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("cannot listen on %s again: %v", addr, err)
	}
	if !within(3*iv, func() bool { return healthOf(r, id) == Passing }) {
		t.Errorf("space back: instance still %s after it came back", healthOf(r, id))
	}
	ln2.Close()
	if !within(3*iv, func() bool { return healthOf(r, id) == Critical }) {
		t.Errorf("space back: instance still %s after it died again", healthOf(r, id))
	}

	cancel()
	want := dump(r.Snapshot())
	r.Close()
	r = mustOpen(t, dir, Options{})
	defer r.Close()
	if got := dump(r.Snapshot()); got != want {
		t.Errorf("after a restart:\n got %s\nwant %s", got, want)
	}
}

// TestDiskFullCrash stops annuaire while its disk is full, after health
// changes were served from memory: their serials were served, so the
// restart must move past them (a copy of the directory is what a crash
// leaves, the page cache being the disk's).
func TestDiskFullCrash(t *testing.T) {
	disk := &fakeDisk{}
	dir := t.TempDir()
	r := mustOpen(t, dir, Options{Serial: 1, writeAt: disk.writeAt})
	defer r.Close()
	id := mustRegister(t, r, echoInstance(1), nil)
	disk.set(true, nil)
	fillJournal(t, r, disk)
	for _, h := range []Health{Critical, Passing, Critical} {
		if err := r.SetHealth(id, h); err != nil {
			t.Fatalf("SetHealth on a full disk: %v", err)
		}
	}
	served := r.Snapshot().Serial()
	crashed := copyDir(t, dir)
	r2 := mustOpen(t, crashed, Options{})
	defer r2.Close()
	if s := r2.Snapshot().Serial(); !SerialLess(served, s) {
		t.Errorf("restart after a crash on a full disk: serial %d, want past %d, the last served", s, served)
	}
}

// TestSyncFails: an fdatasync that fails is not retried (PostgreSQL's
// "fsyncgate": the kernel may have dropped the pages it could not write,
// and a second fsync would say they are safe). Writes stop until a
// restart, even once the disk is well again; health is still served from
// memory.
func TestSyncFails(t *testing.T) {
	disk := &fakeDisk{}
	r := mustOpen(t, t.TempDir(), Options{Serial: 1, writeAt: disk.writeAt})
	defer r.Close()
	id := mustRegister(t, r, echoInstance(1), nil)
	disk.set(false, syscall.EIO)
	if _, err := r.Register(echoInstance(2), nil); !errors.Is(err, syscall.EIO) {
		t.Fatalf("Register with a failing fsync: %v, want EIO", err)
	}
	if _, ok := r.Snapshot().Instance(fmt.Sprintf("echo-tcp-h2-%d", 1002)); ok {
		t.Error("a registration whose fsync failed is served")
	}
	disk.set(false, nil)
	if _, err := r.Register(echoInstance(3), nil); !errors.Is(err, syscall.EIO) {
		t.Errorf("Register after a failed fsync, the disk well again: %v, want the EIO still", err)
	}
	if err := r.SetHealth(id, Critical); err != nil || healthOf(r, id) != Critical {
		t.Errorf("SetHealth after a failed fsync: %v, health %s: want it served from memory", err, healthOf(r, id))
	}
}

// TestDiskFullHistoryTooShort fills the disk and changes health more often
// than the history keeps: once space returns, the journal cannot write the
// change sets served from memory, and writes a checkpoint instead.
func TestDiskFullHistoryTooShort(t *testing.T) {
	disk := &fakeDisk{}
	dir := t.TempDir()
	r := mustOpen(t, dir, Options{Serial: 1, HistorySize: 3, writeAt: disk.writeAt})
	defer r.Close()
	id := mustRegister(t, r, echoInstance(1), nil)
	disk.set(true, nil)
	fillJournal(t, r, disk)
	for i := range 10 {
		if err := r.SetHealth(id, []Health{Critical, Passing}[i%2]); err != nil {
			t.Fatal(err)
		}
	}
	disk.set(false, nil)
	mustRegister(t, r, echoInstance(2), nil) // resumes first
	want := dump(r.Snapshot())
	r.Close()
	r = mustOpen(t, dir, Options{})
	defer r.Close()
	if got := dump(r.Snapshot()); got != want {
		t.Errorf("after a restart:\n got %s\nwant %s", got, want)
	}
	if segs, _ := listSegments(dir); len(segs) != 1 || segs[0] != 2 {
		t.Errorf("segments %v, want one, the second, named by the checkpoint written on resuming", segs)
	}
}

// TestDiskFullConcurrent fills and frees the disk again and again under
// concurrent registrations and health changes: health changes never fail,
// refused registrations change nothing, and what was served last is what
// a restart finds.
func TestDiskFullConcurrent(t *testing.T) {
	disk := &fakeDisk{}
	dir := t.TempDir()
	// Small segments, so that the zeros ahead of frames, which a full
	// disk does not refuse, run out often, and segments and checkpoints
	// are created while it is full.
	r := mustOpen(t, dir, Options{Serial: 1, SegmentSize: 16 << 10, Logger: slog.New(slog.DiscardHandler), writeAt: disk.writeAt})
	defer r.Close()
	var ids []string
	for i := range 20 {
		ids = append(ids, mustRegister(t, r, echoInstance(i), nil))
	}
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for w := range 4 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				inst := echoInstance(1000 + w*100000 + i)
				if _, err := r.Register(inst, hostFor(i)); err != nil && !errors.Is(err, ErrFull) {
					t.Errorf("Register: %v", err)
					return
				}
			}
		})
	}
	for w := range 2 {
		wg.Go(func() {
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				if err := r.SetHealth(ids[(w*7+i)%len(ids)], []Health{Critical, Passing}[i%2]); err != nil {
					t.Errorf("SetHealth: %v", err)
					return
				}
			}
		})
	}
	for i := range 40 {
		disk.set(i%2 == 0, nil)
		time.Sleep(25 * time.Millisecond)
	}
	disk.set(false, nil)
	close(stop)
	wg.Wait()
	if !within(3*time.Second, func() bool { return r.JournalError() == nil }) {
		t.Fatalf("writes did not resume: %v", r.JournalError())
	}
	want := dump(r.Snapshot())
	// The count of instances follows the rollbacks (limit.go).
	if a, b := r.Snapshot().NumInstances(), countInstances(r.Snapshot()); a != b {
		t.Errorf("NumInstances %d, %d rows", a, b)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = mustOpen(t, dir, Options{Logger: slog.New(slog.DiscardHandler)})
	defer r.Close()
	if got := dump(r.Snapshot()); got != want {
		t.Errorf("after a restart, the registry differs from the one served last")
	}
	if a, b := r.Snapshot().NumInstances(), countInstances(r.Snapshot()); a != b {
		t.Errorf("after a restart: NumInstances %d, %d rows", a, b)
	}
	t.Logf("%d refused writes, serial %d", disk.failed(), r.Snapshot().Serial())
}
