//go:build !portable

package wire

import (
	"testing"
	"time"
)

// TestBatchYield checks when a reader gives up its P: never right after
// it waited on its socket, and after yieldAfter of work without a wait.
func TestBatchYield(t *testing.T) {
	var b batch
	start := time.Now()
	b.waited = true
	b.yield(time.Now())
	if b.waited || b.busy.Before(start) {
		t.Fatalf("after a wait: waited %v, busy since %v (before %v)", b.waited, b.busy, start)
	}
	busy := b.busy
	b.yield(time.Now()) // busy for less than yieldAfter: no sleep
	if b.busy != busy {
		t.Errorf("yielded %v after a wait", time.Since(busy))
	}
	b.busy = time.Now().Add(-2 * yieldAfter)
	before := time.Now()
	b.yield(before)
	if !b.busy.After(before) || time.Since(before) < yieldFor {
		t.Errorf("busy for %v without a wait: did not sleep (busy since %v)", 2*yieldAfter, b.busy)
	}
}
