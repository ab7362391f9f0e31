package echo

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"os/signal"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
)

// modes are the designs this system runs: all four on Linux (see Modes).
var modes = Modes()

// TestMain doubles as process mode's exécutant: the test server re-executes
// this test binary with ECHO_TEST_CHILD=1, as annuaire re-executes itself
// with the hidden subcommand echo-child.
func TestMain(m *testing.M) {
	if os.Getenv("ECHO_TEST_CHILD") == "1" {
		ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
		err := RunChild(ctx, os.Args[1:])
		stop()
		if err != nil {
			fmt.Fprintln(os.Stderr, err)
			os.Exit(1)
		}
		os.Exit(0)
	}
	os.Exit(m.Run())
}

func testChild() *exec.Cmd {
	exe, err := os.Executable()
	if err != nil {
		panic(err)
	}
	cmd := exec.Command(exe)
	cmd.Env = append(os.Environ(), "ECHO_TEST_CHILD=1")
	return cmd
}

// testServer is a Server serving TCP and UDP on the same loopback port.
type testServer struct {
	*Server
	addr    string // host:port, TCP and UDP
	ln      net.Listener
	cancel  context.CancelFunc
	tcpDone chan error // Serve's result
	udpDone chan error // ServePacket's result
}

type option func(*Server)

// start serves mode on 127.0.0.1:0 with listen backlog (0: the system's),
// and stops the server when the test ends.
func start(t testing.TB, mode string, backlog int, opts ...option) *testServer {
	t.Helper()
	srv := &Server{
		Mode:         mode,
		ChildCommand: testChild,
		Logger:       slog.New(slog.NewTextHandler(t.Output(), &slog.HandlerOptions{Level: slog.LevelWarn})),
	}
	for _, o := range opts {
		o(srv)
	}
	ln, err := Listen(context.Background(), "tcp", "127.0.0.1:0", backlog)
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	ts := &testServer{Server: srv, addr: ln.Addr().String(), ln: ln, cancel: cancel,
		tcpDone: make(chan error, 1), udpDone: make(chan error, 1)}
	go func() { ts.tcpDone <- srv.Serve(ctx, ln) }()
	go func() { ts.udpDone <- srv.ServePacket(ctx, pc) }()
	t.Cleanup(func() {
		sctx, scancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer scancel()
		srv.Shutdown(sctx)
		cancel()
		for _, done := range []chan error{ts.tcpDone, ts.udpDone} {
			select {
			case err := <-done:
				if err != nil && !errors.Is(err, ErrServerClosed) {
					t.Errorf("Serve: %v", err)
				}
				done <- err // for tests that read it after cleanup started
			case <-time.After(5 * time.Second):
				t.Errorf("Serve did not return after Shutdown")
			}
		}
	})
	return ts
}

func dial(t testing.TB, addr string) *net.TCPConn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(20 * time.Second))
	return c.(*net.TCPConn)
}

// roundTrip sends line on c and checks it comes back.
func roundTrip(t testing.TB, c net.Conn, line string) {
	t.Helper()
	if _, err := io.WriteString(c, line); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(line))
	if _, err := io.ReadFull(c, got); err != nil {
		t.Fatalf("reading the echo of %q: %v", line, err)
	}
	if string(got) != line {
		t.Fatalf("echo = %q, want %q", got, line)
	}
}

// forModes runs f for each mode, in parallel; a mode this system does not
// run is skipped.
func forModes(t *testing.T, ms []string, f func(t *testing.T, mode string)) {
	for _, mode := range ms {
		t.Run(mode, func(t *testing.T) {
			if err := CheckMode(mode); err != nil {
				t.Skip(err)
			}
			t.Parallel()
			f(t, mode)
		})
	}
}

func TestLine(t *testing.T) {
	forModes(t, modes, func(t *testing.T, mode string) {
		ts := start(t, mode, 0)
		c := dial(t, ts.addr)
		roundTrip(t, c, "hello, écho\n")
		roundTrip(t, c, "second line\n")
		c.CloseWrite()
		if rest, err := io.ReadAll(c); err != nil || len(rest) != 0 {
			t.Errorf("after CloseWrite: %q, %v; want EOF", rest, err)
		}
	})
}

func TestPayload1MiB(t *testing.T) {
	forModes(t, modes, func(t *testing.T, mode string) {
		ts := start(t, mode, 0)
		payload := make([]byte, 1<<20)
		rand.Read(payload)
		c := dial(t, ts.addr)
		werr := make(chan error, 1)
		go func() { // write while reading, or both sides' buffers fill up
			_, err := c.Write(payload)
			if err == nil {
				err = c.CloseWrite()
			}
			werr <- err
		}()
		got, err := io.ReadAll(c)
		if err != nil {
			t.Fatal(err)
		}
		if err := <-werr; err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatalf("got %d bytes back, not the %d sent", len(got), len(payload))
		}
	})
}

func TestUDP(t *testing.T) {
	forModes(t, modes, func(t *testing.T, mode string) {
		ts := start(t, mode, 0)
		c, err := net.Dial("udp", ts.addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		for _, msg := range []string{"one datagram", strings.Repeat("x", 60000)} {
			if _, err := io.WriteString(c, msg); err != nil {
				t.Fatal(err)
			}
			buf := make([]byte, 65536)
			n, err := c.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			if string(buf[:n]) != msg {
				t.Errorf("datagram of %d bytes came back as %d bytes", len(msg), n)
			}
		}
		// The count follows the reply's sendto, which the client may beat.
		for deadline := time.Now().Add(5 * time.Second); ts.Stats().Datagrams != 2; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("Stats().Datagrams = %d, want 2", ts.Stats().Datagrams)
			}
		}
	})
}

func TestFiftyClients(t *testing.T) {
	forModes(t, modes, func(t *testing.T, mode string) {
		ts := start(t, mode, 0)
		var wg sync.WaitGroup
		errs := make(chan error, 50)
		for i := range 50 {
			wg.Go(func() {
				c, err := net.DialTimeout("tcp", ts.addr, 10*time.Second)
				if err != nil {
					errs <- err
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				for j := range 3 {
					line := fmt.Sprintf("client %d line %d\n", i, j)
					io.WriteString(c, line)
					got, err := bufio.NewReader(io.LimitReader(c, int64(len(line)))).ReadString('\n')
					if err != nil || got != line {
						errs <- fmt.Errorf("client %d: got %q, %v; want %q", i, got, err, line)
						return
					}
				}
			})
		}
		wg.Wait()
		close(errs)
		for err := range errs {
			t.Error(err)
		}
		if got := ts.Stats().Accepted; got != 50 {
			t.Errorf("Stats().Accepted = %d, want 50", got)
		}
	})
}

// TestNetcat talks to every design with the real OpenBSD nc: -N shuts the
// socket down for writing at the end of its input, then waits for the
// server to close, as CloseWrite does above.
func TestNetcat(t *testing.T) {
	nc := testenv.NeedTool(t, "nc")
	forModes(t, modes, func(t *testing.T, mode string) {
		ts := start(t, mode, 0)
		host, port, _ := net.SplitHostPort(ts.addr)
		in := "bonjour\nle veilleur et l'exécutant\n"

		cmd := exec.Command(nc, "-N", "-w", "5", host, port)
		cmd.Stdin = strings.NewReader(in)
		out, err := cmd.Output()
		if err != nil || string(out) != in {
			t.Errorf("nc -N (tcp): %q, %v; want %q", out, err, in)
		}

		// UDP: nc sends a datagram per read of its input and prints what
		// comes back; -w 1 ends it a second after the input's end.
		cmd = exec.Command(nc, "-u", "-w", "1", host, port)
		cmd.Stdin = strings.NewReader("un datagramme\n")
		out, err = cmd.Output()
		if err != nil || string(out) != "un datagramme\n" {
			t.Errorf("nc -u: %q, %v", out, err)
		}
	})
}

// TestHold is the course's point about designs: four clients that each
// keep their connection after their echo. Every design but the iterative
// one echoes all four while all four are still connected; the iterative
// one echoes nobody else while a client holds it, and the next one as soon
// as it leaves. What is checked is the order of events, not durations, so
// a loaded machine (process mode starts a child per client) only makes it
// slower.
func TestHold(t *testing.T) {
	forModes(t, modes, func(t *testing.T, mode string) {
		ts := start(t, mode, 0)
		begin := time.Now()
		echoes := make(chan time.Duration, 4) // when each client got its echo
		leave := make(chan struct{}, 4)       // a client may hang up
		var wg sync.WaitGroup
		t.Cleanup(wg.Wait)
		for i := range 4 {
			wg.Go(func() {
				c, err := net.DialTimeout("tcp", ts.addr, 10*time.Second)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				c.SetDeadline(time.Now().Add(30 * time.Second))
				line := fmt.Sprintf("client %d\n", i)
				io.WriteString(c, line)
				if _, err := io.ReadFull(c, make([]byte, len(line))); err != nil {
					t.Error(err)
					return
				}
				echoes <- time.Since(begin)
				<-leave
			})
		}
		next := func() time.Duration {
			t.Helper()
			select {
			case d := <-echoes:
				return d
			case <-time.After(30 * time.Second):
				t.Fatalf("%s: no echo within 30 s", mode)
				return 0
			}
		}
		defer close(leave) // on failure, the clients still waiting go
		var echoed []time.Duration
		if mode == "iterative" {
			for range 4 {
				echoed = append(echoed, next())
				// The client served holds on: a second of silence
				// from the others, then it leaves.
				select {
				case d := <-echoes:
					t.Fatalf("iterative: an echo at %v while the client echoed at %v still held the server", d, echoed[len(echoed)-1])
				case <-time.After(time.Second):
				}
				leave <- struct{}{}
			}
		} else {
			for range 4 {
				echoed = append(echoed, next())
			}
			for range 4 {
				leave <- struct{}{}
			}
		}
		t.Logf("%s: 4 clients holding their connection; echoes at %v", mode, echoed)
	})
}

// TestSlowReader: a client that sends without reading must not stop the
// others (every design but the iterative one).
func TestSlowReader(t *testing.T) {
	forModes(t, []string{"concurrent", "process", "select", "epoll"}, func(t *testing.T, mode string) {
		ts := start(t, mode, 0)
		stallingClient(t, ts.addr)
		c := dial(t, ts.addr)
		c.SetDeadline(time.Now().Add(3 * time.Second))
		roundTrip(t, c, "still served\n")
	})
}

func TestIdleTimeout(t *testing.T) {
	forModes(t, modes, func(t *testing.T, mode string) {
		ts := start(t, mode, 0, func(s *Server) { s.IdleTimeout = 300 * time.Millisecond })
		c := dial(t, ts.addr)
		roundTrip(t, c, "then silence\n")
		begin := time.Now()
		n, err := c.Read(make([]byte, 1))
		if n != 0 || !errors.Is(err, io.EOF) {
			t.Fatalf("idle connection: read %d, %v; want EOF", n, err)
		}
		if took := time.Since(begin); took < 200*time.Millisecond {
			t.Errorf("closed after %v, before the idle timeout", took)
		}
	})
}

// TestCap: at MaxConns (MaxChildren in process mode) the server stops
// accepting; the next client waits in the listen queue until one leaves.
func TestCap(t *testing.T) {
	forModes(t, []string{"concurrent", "process", "select", "epoll"}, func(t *testing.T, mode string) {
		ts := start(t, mode, 0, func(s *Server) { s.MaxConns, s.MaxChildren = 1, 1 })
		first := dial(t, ts.addr)
		roundTrip(t, first, "first\n")
		second := dial(t, ts.addr) // the handshake succeeds: the kernel queues it
		io.WriteString(second, "second\n")
		second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := second.Read(make([]byte, 10)); n != 0 || !errors.Is(err, os.ErrDeadlineExceeded) {
			t.Fatalf("second client served over the cap: %d, %v", n, err)
		}
		first.Close()
		second.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, len("second\n"))
		if _, err := io.ReadFull(second, got); err != nil || string(got) != "second\n" {
			t.Fatalf("second client after the first left: %q, %v", got, err)
		}
	})
}
