package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/resolver"
	"github.com/annuaire/annuaire/services/echo"
	"github.com/annuaire/annuaire/services/mail"
	"github.com/annuaire/annuaire/services/netserver"
)

// TestStopContract checks netserver's stop contract on every hosted
// server, built by its row as "annuaire serve" builds it, and on echo in
// each of its designs: Serve returns http.ErrServerClosed after Shutdown
// (and at once when called after it); Shutdown lets an idle client go,
// may be called again, and cuts a busy one when its context ends; when
// Serve's context ends, a busy client gets --drain and no more, and Serve
// returns nil; and a server given no Logger writes nothing to
// slog.Default. A new row is checked by being in the table.
//
// The DNS server is not here: it lives in authority, whose
// Serve returns its own ErrServerClosed and whose nil Logger means
// slog.Default.
func TestStopContract(t *testing.T) {
	// Not parallel: slog.Default and the environment are the process's.
	var defaultLog syncBuffer
	old := slog.Default()
	slog.SetDefault(slog.New(slog.NewTextHandler(&defaultLog, &slog.HandlerOptions{Level: slog.LevelDebug})))
	t.Cleanup(func() { slog.SetDefault(old) })
	// Process mode's children re-execute this binary as "echo-child".
	t.Setenv("ANNUAIRE_TEST_MAIN", "1")

	for _, h := range hostedServices() {
		modes := []string{""}
		if h.flag == "echo" {
			modes = echo.Modes() // the designs this system runs
		}
		for _, mode := range modes {
			name := h.flag
			if mode != "" {
				name += "/" + mode
			}
			t.Run(name, func(t *testing.T) {
				t.Run("Shutdown", func(t *testing.T) { checkShutdown(t, h, mode) })
				t.Run("ContextEnd", func(t *testing.T) { checkContextEnd(t, h, mode) })
			})
		}
	}
	if defaultLog.String() != "" {
		t.Errorf("servers without a Logger wrote to slog.Default:\n%s", defaultLog.String())
	}
}

// contractDrain is --drain in these tests.
const contractDrain = 300 * time.Millisecond

// contractProcess is a process with in-memory parts, no logger, and a
// resolver whose server never answers (a lookup waits until its context
// ends: the telnet console's busy client).
func contractProcess(t *testing.T, mode string) *process {
	t.Helper()
	silent, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { silent.Close() })
	reg := registry.New(1)
	r := &resolver.Resolver{Server: silent.LocalAddr().String(), Zone: "svc.internal."}
	return &process{
		flags: &serveFlags{echoMode: mode, drain: contractDrain}, reg: reg, zone: "svc.internal.", token: "t0ken",
		checker: &registry.Checker{Registry: reg}, metrics: newMetrics(reg),
		lookup: r, fresh: r, mailbox: &mail.Receiver{}, guard: &netserver.Guard{},
	}
}

// running is a row's server serving its sockets on loopback.
type running struct {
	srv     hostedServer
	sockets []*socket
	served  []chan error
}

func runRow(t *testing.T, ctx context.Context, h hostedService, p *process) *running {
	t.Helper()
	sockets, err := listenHosted(context.Background(), p.flags, h, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := &running{srv: h.start(p), sockets: sockets}
	for _, s := range sockets {
		done := make(chan error, 1)
		go func() { done <- s.serve(ctx, r.srv) }()
		r.served = append(r.served, done)
	}
	t.Cleanup(func() {
		sctx, cancel := context.WithTimeout(context.Background(), time.Second)
		defer cancel()
		r.srv.shutdown(sctx)
		for _, s := range sockets {
			s.close()
		}
	})
	return r
}

func (r *running) tcpAddr() string {
	for _, s := range r.sockets {
		if s.proto == "tcp" {
			return s.addr().String()
		}
	}
	return ""
}

// waitServed checks what each Serve returned, within limit.
func (r *running) waitServed(t *testing.T, limit time.Duration, ok func(error) bool, want string) {
	t.Helper()
	for i, done := range r.served {
		select {
		case err := <-done:
			if !ok(err) {
				t.Errorf("Serve (%s) returned %v, want %s", r.sockets[i].proto, err, want)
			}
		case <-time.After(limit):
			t.Fatalf("Serve (%s) did not return within %v", r.sockets[i].proto, limit)
		}
	}
}

func checkShutdown(t *testing.T, h hostedService, mode string) {
	r := runRow(t, context.Background(), h, contractProcess(t, mode))
	c := idleClient(t, h.flag, r.tcpAddr())

	begin := time.Now()
	if err := r.srv.shutdown(context.Background()); err != nil {
		t.Fatalf("Shutdown with an idle client: %v", err)
	}
	if d := time.Since(begin); d > 3*time.Second {
		t.Errorf("Shutdown took %v: an idle client was waited for", d)
	}
	r.waitServed(t, 3*time.Second, func(err error) bool { return errors.Is(err, http.ErrServerClosed) }, "http.ErrServerClosed")
	expectEnd(t, c)
	begin = time.Now()
	if err := r.srv.shutdown(context.Background()); err != nil || time.Since(begin) > time.Second {
		t.Errorf("second Shutdown: %v after %v", err, time.Since(begin))
	}
	// Serve after Shutdown refuses at once, and closes what it was given.
	again, err := listenHosted(context.Background(), &serveFlags{}, h, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, s := range again {
		if err := s.serve(context.Background(), r.srv); !errors.Is(err, http.ErrServerClosed) {
			t.Errorf("Serve (%s) after Shutdown: %v, want http.ErrServerClosed", s.proto, err)
		}
		if s.open() {
			t.Errorf("Serve (%s) after Shutdown left its socket open", s.proto)
		}
	}

	if busy := busyClients[h.flag]; busy != nil {
		r := runRow(t, context.Background(), h, contractProcess(t, mode))
		c := busy(t, r.tcpAddr())
		ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
		defer cancel()
		if err := r.srv.shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
			t.Errorf("Shutdown with a busy client and a 200 ms context: %v, want context.DeadlineExceeded", err)
		}
		expectEnd(t, c)
	}
}

func checkContextEnd(t *testing.T, h hostedService, mode string) {
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	r := runRow(t, ctx, h, contractProcess(t, mode))
	busy := busyClients[h.flag]
	if busy == nil {
		busy = func(t *testing.T, addr string) net.Conn { return idleClient(t, h.flag, addr) }
	}
	c := busy(t, r.tcpAddr())
	begin := time.Now()
	cancel()
	r.waitServed(t, contractDrain+5*time.Second, func(err error) bool { return err == nil }, "nil")
	took := time.Since(begin)
	t.Logf("Serve returned %v after its context ended", took)
	if busyClients[h.flag] != nil && took < contractDrain*8/10 {
		t.Errorf("Serve returned after %v: the busy client did not get --drain (%v)", took, contractDrain)
	}
	if took > contractDrain+2*time.Second {
		t.Errorf("Serve returned after %v: the busy client got more than --drain (%v)", took, contractDrain)
	}
	expectEnd(t, c)
}

// expectEnd checks that the server has ended c: a read reaches the end
// (after whatever was in flight) or a reset, not a timeout.
func expectEnd(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, err := io.Copy(io.Discard, c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Errorf("the client's connection is still open after the stop")
	}
}

func dialContract(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.SetDeadline(time.Now().Add(10 * time.Second))
	return c
}

// readUntil reads from r until s has been read.
func readUntil(t *testing.T, r *bufio.Reader, s string) {
	t.Helper()
	var got strings.Builder
	for !strings.HasSuffix(got.String(), s) {
		b, err := r.ReadByte()
		if err != nil {
			t.Fatalf("waiting for %q: %v (read %q)", s, err, got.String())
		}
		got.WriteByte(b)
	}
}

// idleClient is a connection that waits between two requests, once the
// service has answered it at least once, so that a stop may end it at
// once. A service with nothing to answer first only needs a connection.
func idleClient(t *testing.T, flag, addr string) net.Conn {
	t.Helper()
	c := dialContract(t, addr)
	r := bufio.NewReader(c)
	switch flag {
	case "web":
		fmt.Fprintf(c, "GET /healthz HTTP/1.1\r\nHost: x\r\n\r\n")
		resp, err := http.ReadResponse(r, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
	case "echo":
		fmt.Fprintf(c, "bonjour\n")
		readUntil(t, r, "bonjour\n")
	case "mail":
		readUntil(t, r, "\r\n")
	case "telnet":
		readUntil(t, r, "annuaire> ")
	case "daytime":
		readUntil(t, r, "\r\n")
	default:
		time.Sleep(100 * time.Millisecond) // the server has accepted it
	}
	return c
}

// busyClients put a connection in the middle of a request that never
// ends by itself: a drain must wait for it, and cut it when its time is
// up. daytime and discard have no such state.
var busyClients = map[string]func(t *testing.T, addr string) net.Conn{
	"web": func(t *testing.T, addr string) net.Conn {
		c := dialContract(t, addr)
		fmt.Fprintf(c, "POST /api/services HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer t0ken\r\nContent-Length: 1000\r\n\r\n{\"name\":")
		time.Sleep(100 * time.Millisecond) // the handler waits for the rest of the body
		return c
	},
	"echo": func(t *testing.T, addr string) net.Conn {
		// Sends without reading: the server is blocked sending back.
		c := dialContract(t, addr)
		fmt.Fprintf(c, "serve me\n")
		readUntil(t, bufio.NewReader(c), "serve me\n")
		go func() {
			chunk := make([]byte, 64<<10)
			for {
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}()
		time.Sleep(300 * time.Millisecond) // the buffers fill up
		return c
	},
	"mail": func(t *testing.T, addr string) net.Conn {
		c := dialContract(t, addr)
		r := bufio.NewReader(c)
		readUntil(t, r, "\r\n")
		for _, cmd := range []string{"HELO x", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA"} {
			fmt.Fprintf(c, "%s\r\n", cmd)
			readUntil(t, r, "\r\n")
		}
		fmt.Fprintf(c, "Subject: en route\r\n\r\nla suite arrive")
		return c
	},
	"telnet": func(t *testing.T, addr string) net.Conn {
		// A lookup through a name server that never answers.
		c := dialContract(t, addr)
		readUntil(t, bufio.NewReader(c), "annuaire> ")
		fmt.Fprintf(c, "lookup echo\r\n")
		time.Sleep(100 * time.Millisecond)
		return c
	},
}

// TestContractCoversEveryRow: a row whose service has requests in flight
// belongs in busyClients; the others are listed here, so that a new row is
// a decision, not an omission.
func TestContractCoversEveryRow(t *testing.T) {
	nothingInFlight := map[string]bool{"daytime": true, "discard": true}
	for _, h := range hostedServices() {
		if busyClients[h.flag] == nil && !nothingInFlight[h.flag] {
			t.Errorf("--%s: no busy client in the stop contract's test", h.flag)
		}
	}
}
