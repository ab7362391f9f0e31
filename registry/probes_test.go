package registry

import (
	"context"
	"fmt"
	"net"
	"sync/atomic"
	"testing"
	"time"
)

// TestCheckerMaxProbes: no more than MaxProbes checks hold a socket at
// once, and the ones that wait their turn are not failed for it: a
// file-descriptor budget can count on the cap (issue 18 §1).
func TestCheckerMaxProbes(t *testing.T) {
	r := New(1)
	var now, most atomic.Int64
	c := &Checker{Registry: r, MaxProbes: 2, Dialer: func(ctx context.Context, network, addr string) (net.Conn, error) {
		n := now.Add(1)
		defer now.Add(-1)
		for m := most.Load(); n > m && !most.CompareAndSwap(m, n); m = most.Load() {
		}
		time.Sleep(50 * time.Millisecond) // a slow connect, shorter than the timeout
		a, b := net.Pipe()
		b.Close()
		return a, nil
	}}
	const n = 8
	for i := range n {
		inst := Instance{ID: fmt.Sprintf("i%d", i), Service: "echo", Proto: "tcp", Host: "h", Port: uint16(7000 + i),
			Health: Critical, Check: &Check{Type: "tcp", Target: fmt.Sprintf("192.0.2.1:%d", 7000+i), Interval: every(100 * time.Millisecond)}}
		if _, err := r.Register(inst, nil); err != nil {
			t.Fatal(err)
		}
	}
	startChecker(t, c)
	for i := range n {
		waitHealth(t, r, fmt.Sprintf("i%d", i), Passing, 5*time.Second)
	}
	if m := most.Load(); m != 2 {
		t.Errorf("%d probes at once, want MaxProbes 2", m)
	}
}
