package testenv

import (
	"errors"
	"net"
	"syscall"
	"testing"
	"time"
)

// Blackhole makes address (a loopback IP:port) behave as an address whose
// packets are dropped: a connect to it hangs until its timeout, as one to
// a host that is down. No root or firewall is needed: it listens there
// with a queue of one (listen(fd, 0)), and fills the queue with one
// connection that is never accepted. Linux then drops the SYN of every
// further connect (tcp_conn_request: the accept queue is full, whatever
// the SYN cookie setting), and the client retransmits it. It stops with
// the test; a kernel that answers those SYNs skips the test.
func Blackhole(tb testing.TB, address string) {
	tb.Helper()
	ln, err := net.Listen("tcp", address)
	if err != nil {
		tb.Fatalf("blackhole: %v", err)
	}
	tb.Cleanup(func() { ln.Close() })
	rc, err := ln.(*net.TCPListener).SyscallConn()
	if err != nil {
		tb.Fatal(err)
	}
	var lerr error
	if err := rc.Control(func(fd uintptr) { lerr = syscall.Listen(int(fd), 0) }); err != nil || lerr != nil {
		tb.Fatalf("blackhole: listen(0): %v %v", err, lerr)
	}
	filler, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		tb.Fatalf("blackhole: %v", err)
	}
	tb.Cleanup(func() { filler.Close() })
	probe, err := net.DialTimeout("tcp", ln.Addr().String(), 100*time.Millisecond)
	if err == nil {
		probe.Close()
		tb.Skip("blackhole: this kernel queued a connect beyond a full accept queue")
	}
	if ne, ok := errors.AsType[net.Error](err); !ok || !ne.Timeout() {
		tb.Skipf("blackhole: a connect to a full accept queue did not hang: %v", err)
	}
}
