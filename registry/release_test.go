package registry

import (
	"net/netip"
	"strconv"
	"testing"
	"time"
)

// TestReleaseAfterBurst: a release is armed only once enough commits came
// since the last one, gives memory back once, after which it takes as
// many commits again, and changes nothing a reader sees.
func TestReleaseAfterBurst(t *testing.T) {
	r := New(1)
	freed := make(chan struct{}, 10)
	r.writeMu.Lock()
	r.rel.min, r.rel.idle = 50, time.Millisecond
	r.rel.free = func() { freed <- struct{}{} }
	r.writeMu.Unlock()

	register := func(from, to int) {
		t.Helper()
		for i := from; i < to; i++ {
			if _, err := r.Update(func(tx *Tx) error {
				port := 7000
				_, err := tx.Register(Registration{Service: "s" + strconv.Itoa(i), Port: &port, Addresses: []netip.Addr{apiAddr(i)}})
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
	}
	armed := func() bool {
		r.writeMu.Lock()
		defer r.writeMu.Unlock()
		return r.rel.timer != nil && r.rel.commits > 0
	}

	register(0, 49)
	if armed() {
		t.Fatal("armed after 49 commits, want 50")
	}
	r.release() // the timer's call before a release is due: nothing
	select {
	case <-freed:
		t.Fatal("released before a release was due")
	default:
	}

	register(49, 50)
	snap := r.Snapshot()
	select {
	case <-freed:
	case <-time.After(10 * time.Second): // not a measure: only how long to wait for a stuck timer
		t.Fatal("no release 10 s after the burst")
	}
	if r.Snapshot() != snap {
		t.Error("a release published a snapshot")
	}
	r.writeMu.Lock()
	if r.rel.commits != 0 {
		t.Errorf("%d commits counted after a release, want 0", r.rel.commits)
	}
	r.writeMu.Unlock()

	// The next takes as many commits: the timer fires early, for nothing.
	r.release()
	register(50, 60)
	r.release()
	select {
	case <-freed:
		t.Fatal("released again after 10 commits")
	default:
	}

	// Closed: nothing more, even from a timer already running.
	register(60, 99)
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r.writeMu.Lock()
	r.rel.commits = 1000
	r.writeMu.Unlock()
	r.release()
	select {
	case <-freed:
		t.Fatal("released after Close")
	default:
	}
}

// TestReleaseScalesWithInstances: past releaseMin, a release waits for a
// quarter of the instances in commits, so that its collection costs O(1)
// per commit.
func TestReleaseScalesWithInstances(t *testing.T) {
	r := New(1)
	r.writeMu.Lock()
	defer r.writeMu.Unlock()
	r.rel.min = 10
	r.instances, r.rel.commits = 400, 99
	if r.releaseDue() {
		t.Error("due after 99 commits with 400 instances")
	}
	r.rel.commits = 100
	if !r.releaseDue() {
		t.Error("not due after 100 commits with 400 instances")
	}
	r.instances, r.rel.commits = 8, 10
	if !r.releaseDue() {
		t.Error("not due after releaseMin commits")
	}
}
