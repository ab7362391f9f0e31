package echo

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
)

// TestListenBacklog reads the queue size back: for a listening socket, ss
// shows the backlog in its Send-Q column.
func TestListenBacklog(t *testing.T) {
	ss := testenv.NeedTool(t, "ss")
	for _, backlog := range []int{1, 5} {
		ln, err := Listen(context.Background(), "tcp", "127.0.0.1:0", backlog)
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := ln.Addr().(*net.TCPAddr).Port
		out, err := exec.Command(ss, "-Hltn", fmt.Sprintf("sport = :%d", port)).Output()
		if err != nil {
			t.Fatalf("ss: %v", err)
		}
		// State Recv-Q Send-Q Local Peer
		fields := strings.Fields(string(out))
		if len(fields) < 3 || fields[2] != fmt.Sprint(backlog) {
			t.Errorf("Listen(backlog %d): ss says %q, want Send-Q %d", backlog, out, backlog)
		}
	}
}

func TestListenAddressInUse(t *testing.T) {
	for _, backlog := range []int{0, 5} {
		first, err := Listen(context.Background(), "tcp", "127.0.0.1:0", backlog)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		addr := first.Addr().String()
		_, err = Listen(context.Background(), "tcp", addr, backlog)
		var op *net.OpError
		if !errors.As(err, &op) || !errors.Is(err, syscall.EADDRINUSE) {
			t.Fatalf("second Listen on %s: %v; want a *net.OpError for EADDRINUSE", addr, err)
		}
		if msg := err.Error(); !strings.Contains(msg, addr) || !strings.Contains(msg, "address already in use") {
			t.Errorf("error %q should name %s and the cause", msg, addr)
		}
		t.Logf("backlog %d: %v", backlog, err)
	}
}

func TestListenIPv6(t *testing.T) {
	ln, err := Listen(context.Background(), "tcp", "[::1]:0", 2)
	if err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	}
	defer ln.Close()
	ts := &Server{}
	go ts.Serve(context.Background(), ln)
	defer ts.Shutdown(context.Background())
	c := dial(t, ln.Addr().String())
	roundTrip(t, c, "over IPv6\n")
}

// TestIterativeBacklog makes the listen queue visible. The iterative
// server with listen(1) is busy with one client; Linux queues backlog+1 =
// 2 more connections whose handshake completes at once (their connect
// returns, their bytes wait); a SYN that finds the queue full is dropped,
// the client retransmits it after 1 s (then 2 s, 4 s ...), so its connect
// stalls until the queue has room.
func TestIterativeBacklog(t *testing.T) {
	ts := start(t, "iterative", 1)
	busy := dial(t, ts.addr)
	roundTrip(t, busy, "keeping the server busy\n")
	begin := time.Now()

	type result struct {
		connect, echo time.Duration
		err           error
	}
	results := make([]result, 4)
	var wg sync.WaitGroup
	for i := range results {
		wg.Go(func() {
			t0 := time.Now()
			c, err := net.DialTimeout("tcp", ts.addr, 15*time.Second)
			results[i].connect = time.Since(t0)
			if err != nil {
				results[i].err = err
				return
			}
			defer c.Close()
			c.SetDeadline(time.Now().Add(15 * time.Second))
			line := fmt.Sprintf("queued client %d\n", i)
			io.WriteString(c, line)
			_, results[i].err = io.ReadFull(c, make([]byte, len(line)))
			results[i].echo = time.Since(begin)
		})
		time.Sleep(100 * time.Millisecond) // one after the other, so each SYN sees the queue as the previous left it
	}
	time.Sleep(time.Second)
	held := time.Since(begin)
	busy.Close() // the server accepts the first queued client
	wg.Wait()

	stalled := 0
	for i, r := range results {
		t.Logf("client %d: connect took %v, echo at %v (server busy until %v)", i, r.connect.Round(time.Millisecond), r.echo.Round(time.Millisecond), held.Round(time.Millisecond))
		if r.err != nil {
			t.Errorf("client %d: %v", i, r.err)
		}
		if r.echo < held {
			t.Errorf("client %d had its echo at %v, while the iterative server was busy until %v", i, r.echo, held)
		}
		if r.connect > 800*time.Millisecond {
			stalled++
		}
	}
	if results[0].connect > 500*time.Millisecond {
		t.Errorf("the first queued client took %v to connect: the queue should have had room", results[0].connect)
	}
	if stalled == 0 {
		t.Errorf("no connect stalled with listen(1) and 4 waiting clients")
	}
}
