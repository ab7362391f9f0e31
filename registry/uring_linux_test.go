//go:build !portable

package registry

import (
	"bytes"
	"errors"
	"os"
	"path/filepath"
	"testing"

	"golang.org/x/sys/unix"
)

func newTestURing(t *testing.T) *uring {
	u, err := newURing()
	if err != nil {
		t.Skipf("no io_uring here (%v): the journal syncs plainly, as TestJournalPlainSync checks", err)
	}
	t.Cleanup(u.close)
	return u
}

// TestURingWriteSync checks writes at offsets through the ring, over and
// past what the file holds, and that an error of the write is the write's.
func TestURingWriteSync(t *testing.T) {
	u := newTestURing(t)
	path := filepath.Join(t.TempDir(), "f")
	f, err := os.OpenFile(path, os.O_RDWR|os.O_CREATE, 0o600)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	want := make([]byte, 0, 300)
	for i := range 100 {
		rec := bytes.Repeat([]byte{byte('a' + i%26)}, 3)
		if err := u.writeSync(f, rec, int64(len(want))); err != nil {
			t.Fatalf("write %d: %v", i, err)
		}
		want = append(want, rec...)
	}
	if err := u.writeSync(f, []byte("XY"), 10); err != nil {
		t.Fatal(err)
	}
	copy(want[10:], "XY")
	if got, _ := os.ReadFile(path); !bytes.Equal(got, want) {
		t.Errorf("file holds %q, want %q", got, want)
	}

	ro, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer ro.Close()
	if err := u.writeSync(ro, []byte("x"), 0); !errors.Is(err, unix.EBADF) {
		t.Errorf("write to a read-only file: %v, want EBADF", err)
	}
	// the ring is still usable after a failed chain
	if err := u.writeSync(f, []byte("Z"), 0); err != nil {
		t.Errorf("after a failure: %v", err)
	}
}

// TestJournalPlainSync runs a registry through writes, a segment rotation
// and a restart with the leader's own write and fdatasync, the path taken
// where io_uring is missing or forbidden.
func TestJournalPlainSync(t *testing.T) {
	for _, plain := range []bool{true, false} {
		dir := t.TempDir()
		r := mustOpen(t, dir, Options{SegmentSize: 2048, plainSync: plain})
		if plain != (r.j.ring == nil) {
			if plain {
				t.Fatal("plainSync set, but the journal has a ring")
			}
			t.Log("no io_uring here: both runs are plain")
		}
		for i := range 40 {
			mustRegister(t, r, echoInstance(i), nil)
		}
		r.j.mu.Lock()
		seg := r.j.seg
		r.j.mu.Unlock()
		if seg < 2 {
			t.Errorf("plain=%v: still in segment %d: the rotation was not exercised", plain, seg)
		}
		r.Close()
		r = mustOpen(t, dir, Options{plainSync: plain})
		if got := countInstances(r.Snapshot()); got != 40 {
			t.Errorf("plain=%v: %d instances after a restart, want 40", plain, got)
		}
		r.Close()
	}
}
