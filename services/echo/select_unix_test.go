//go:build unix

package echo

import (
	"errors"
	"io"
	"os"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestSelectFDSetSize: select(2) watches descriptors below FD_SETSIZE
// only. With every descriptor below it taken, the next client's would be
// past it: the select loop closes that connection at once, and goes on
// serving the clients it has, and new ones once descriptors are free.
// (Not parallel: it takes the process's low descriptors.)
func TestSelectFDSetSize(t *testing.T) {
	if err := CheckMode("select"); err != nil {
		t.Skip(err)
	}
	var lim unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &lim); err != nil || lim.Cur < unix.FD_SETSIZE+64 {
		t.Skipf("RLIMIT_NOFILE %d: cannot open descriptors past FD_SETSIZE (%d)", lim.Cur, unix.FD_SETSIZE)
	}
	ts := start(t, "select", 0)
	held := dial(t, ts.addr)
	roundTrip(t, held, "before\n") // the loop runs, its descriptors are open

	null, err := os.Open(os.DevNull)
	if err != nil {
		t.Fatal(err)
	}
	defer null.Close()
	var fillers []int
	closeFillers := func() {
		for _, fd := range fillers {
			unix.Close(fd)
		}
		fillers = nil
	}
	defer closeFillers()
	for {
		fd, err := unix.Dup(int(null.Fd()))
		if err != nil {
			t.Fatal(err)
		}
		if fd >= unix.FD_SETSIZE {
			unix.Close(fd)
			break
		}
		fillers = append(fillers, fd)
	}

	past := dial(t, ts.addr) // the kernel queues it; the loop accepts and closes it
	past.SetDeadline(time.Now().Add(5 * time.Second))
	io.WriteString(past, "refused?\n")
	n, err := past.Read(make([]byte, 16))
	if n != 0 || !(errors.Is(err, io.EOF) || errors.Is(err, syscall.ECONNRESET)) {
		t.Fatalf("a client past FD_SETSIZE: read %d, %v; want its connection closed", n, err)
	}
	roundTrip(t, held, "still served\n")

	closeFillers()
	after := dial(t, ts.addr)
	roundTrip(t, after, "after\n")
	if got := ts.Stats().Accepted; got != 2 {
		t.Errorf("Stats().Accepted = %d, want 2 (the refused client is not counted)", got)
	}
}
