package telnet

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/services/netserver"
)

// fakeLookup answers like "annuaire lookup" would for echo.
func fakeLookup(ctx context.Context, name string) (string, error) {
	if name != "echo" {
		return "", errors.New("no such name " + name + ".svc.internal.")
	}
	return "echo\n  _echo._tcp.svc.internal. SRV 0 0 7007 lab.svc.internal.\n  lab.svc.internal. A 127.0.0.1\n  -> 127.0.0.1:7007\n", nil
}

func fakeList(ctx context.Context) (string, error) {
	return "echo    tcp  lab.svc.internal.  127.0.0.1:7007\n", nil
}

// start serves c on a fresh loopback port, as annuaire hosts it (a
// netserver.Server calling its Handle), and returns its address.
func start(t *testing.T, c *Console) string {
	t.Helper()
	return startOn(t, serverFor(c))
}

// serverFor is the connection server annuaire runs c under.
func serverFor(c *Console) *netserver.Server {
	return &netserver.Server{Name: "telnet", Handle: c.Handle, Refusal: Refusal}
}

func startOn(t *testing.T, srv *netserver.Server) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil && !errors.Is(err, netserver.ErrServerClosed) {
			t.Errorf("Serve: %v", err)
		}
	})
	return ln.Addr().String()
}

// rawClient speaks bytes, not telnet: it sees exactly what the server
// sends.
type rawClient struct {
	t  *testing.T
	nc net.Conn
	r  *bufio.Reader
}

func dial(t *testing.T, addr string) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &rawClient{t: t, nc: nc, r: bufio.NewReader(nc)}
}

func (c *rawClient) send(s string) {
	c.t.Helper()
	if _, err := io.WriteString(c.nc, s); err != nil {
		c.t.Fatal(err)
	}
}

// until reads up to and including the first occurrence of s.
func (c *rawClient) until(s string) string {
	c.t.Helper()
	var b bytes.Buffer
	for !bytes.HasSuffix(b.Bytes(), []byte(s)) {
		ch, err := c.r.ReadByte()
		if err != nil {
			c.t.Fatalf("waiting for %q: %v; got %q", s, err, b.String())
		}
		b.WriteByte(ch)
	}
	return b.String()
}

// rest reads to EOF.
func (c *rawClient) rest() string {
	c.t.Helper()
	b, err := io.ReadAll(c.r)
	if err != nil {
		c.t.Fatalf("read to EOF: %v; got %q", err, b)
	}
	return string(b)
}

const prompt = "annuaire> "

func TestConsole(t *testing.T) {
	s := &Console{List: fakeList, Lookup: fakeLookup}
	c := dial(t, start(t, s))
	banner := c.until(prompt)
	if !strings.Contains(banner, "annuaire console at 127.0.0.1:") || !strings.Contains(banner, "name (telnet) -> DNS") {
		t.Errorf("banner %q", banner)
	}
	if strings.Contains(strings.ReplaceAll(banner, "\r\n", ""), "\n") {
		t.Errorf("bare LF in %q", banner)
	}
	c.send("help\r\n")
	if out := c.until(prompt); !strings.Contains(out, "lookup NAME") {
		t.Errorf("help: %q", out)
	}
	c.send("list\r\x00")
	if out := c.until(prompt); out != "echo    tcp  lab.svc.internal.  127.0.0.1:7007\r\n"+prompt {
		t.Errorf("list: %q", out)
	}
	c.send("LOOKUP echo\n")
	if out := c.until(prompt); !strings.Contains(out, "\r\n  -> 127.0.0.1:7007\r\n") {
		t.Errorf("lookup: %q", out)
	}
	c.send("lookup nothere\r\n")
	if out := c.until(prompt); out != "lookup nothere: no such name nothere.svc.internal.\r\n"+prompt {
		t.Errorf("lookup nothere: %q", out)
	}
	c.send("lookup\r\n")
	if out := c.until(prompt); !strings.HasPrefix(out, "usage: lookup NAME") {
		t.Errorf("lookup without name: %q", out)
	}
	c.send("frobnicate\r\n")
	if out := c.until(prompt); out != "unknown command \"frobnicate\": type help\r\n"+prompt {
		t.Errorf("unknown: %q", out)
	}
	c.send("quit\r\n")
	if out := c.rest(); out != "Goodbye.\r\n" {
		t.Errorf("quit: %q", out)
	}
	if n := s.Commands(); n != 7 {
		t.Errorf("%d commands counted, want 7", n)
	}
}

// TestNegotiation sends what real clients send: DO ECHO, WILL NAWS and its
// subnegotiation, WONT/DONT (never answered), and IAC IAC in data, which
// must come back doubled.
func TestNegotiation(t *testing.T) {
	var got string
	s := &Console{Lookup: func(ctx context.Context, name string) (string, error) {
		got = name
		return "name " + name, nil
	}}
	c := dial(t, start(t, s))
	c.until(prompt)
	c.send("\xff\xfd\x01\xff\xfb\x1f\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0\xff\xfc\x03\xff\xfe\x01")
	if out := c.until("\xff\xfe\x1f"); out != "\xff\xfc\x01\xff\xfe\x1f" {
		t.Errorf("negotiation reply %q", out)
	}
	c.send("lookup a\xff\xffb\r\n")
	if out := c.until(prompt); out != "name a\xff\xffb\r\n"+prompt {
		t.Errorf("lookup reply %q", out) // no answer to WONT/DONT before it
	}
	if got != "a\xffb" {
		t.Errorf("hook got %q", got)
	}
}

func TestNoHooks(t *testing.T) {
	c := dial(t, start(t, &Console{}))
	c.until(prompt)
	c.send("list\r\nlookup echo\r\n")
	out := c.until(prompt) + c.until(prompt)
	if !strings.Contains(out, "list: not available") || !strings.Contains(out, "lookup: not available") {
		t.Errorf("got %q", out)
	}
}

func TestLongLine(t *testing.T) {
	c := dial(t, start(t, &Console{MaxLine: 100}))
	c.until(prompt)
	c.send(strings.Repeat("x", 100000) + "\r\nhelp\r\n")
	if out := c.until(prompt); out != "line too long (at most 100 bytes)\r\n"+prompt {
		t.Errorf("got %q", out)
	}
	if out := c.until(prompt); !strings.Contains(out, "Commands:") {
		t.Errorf("after a long line: %q", out)
	}
}

func TestIdleTimeout(t *testing.T) {
	c := dial(t, start(t, &Console{IdleTimeout: 100 * time.Millisecond}))
	c.until(prompt)
	if out := c.rest(); !strings.Contains(out, "idle for 100ms, closing") {
		t.Errorf("got %q", out)
	}
}

func TestMaxConns(t *testing.T) {
	s := serverFor(&Console{})
	s.MaxConns = 1
	addr := startOn(t, s)
	c1 := dial(t, addr)
	c1.until(prompt)
	c2 := dial(t, addr)
	if out := c2.rest(); !strings.Contains(out, "too many connections") {
		t.Errorf("got %q", out)
	}
	if st := s.Stats(); st.Rejected != 1 || st.Active != 1 {
		t.Errorf("stats %+v", st)
	}
}

// TestShutdown: a session waiting at the prompt is told goodbye, one whose
// command runs finishes it first, and Shutdown waits for both.
func TestShutdown(t *testing.T) {
	release := make(chan struct{})
	entered := make(chan struct{})
	s := serverFor(&Console{Lookup: func(ctx context.Context, name string) (string, error) {
		close(entered)
		<-release
		return "slow answer", nil
	}})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), ln) }()
	idle := dial(t, ln.Addr().String())
	idle.until(prompt)
	busy := dial(t, ln.Addr().String())
	busy.until(prompt)
	busy.send("lookup slow\r\n")
	<-entered

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	if out := idle.rest(); out != "\r\n"+goodbyeShutdown+"\r\n" {
		t.Errorf("idle session got %q", out)
	}
	close(release)
	if out := busy.rest(); out != "slow answer\r\n\r\n"+goodbyeShutdown+"\r\n" {
		t.Errorf("busy session got %q", out)
	}
	if err := <-shut; err != nil {
		t.Errorf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, netserver.ErrServerClosed) {
		t.Errorf("Serve: %v", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
}
