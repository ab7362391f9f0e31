package web

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/registry"
)

// dialFrom connects to addr from the loopback address ip, so that one
// test can be several clients. Linux routes all of 127.0.0.0/8 to lo;
// elsewhere only 127.0.0.1 may be configured.
func dialFrom(t *testing.T, ip, addr string) net.Conn {
	t.Helper()
	d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 5 * time.Second}
	c, err := d.Dial("tcp", addr)
	if err != nil {
		t.Skipf("cannot connect from %s: %v", ip, err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// status sends a GET for path on c, or nothing when path is "", and
// returns the answer's status code.
func status(t *testing.T, c net.Conn, path string) int {
	t.Helper()
	if path != "" {
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path)
	}
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(c), nil)
	if err != nil {
		t.Fatalf("%s from %s: %v", path, c.LocalAddr(), err)
	}
	if path == "/api/services" || resp.StatusCode != 200 {
		resp.Body.Close()
	}
	c.SetReadDeadline(time.Time{})
	return resp.StatusCode
}

// closed fails unless the server has closed c.
func closed(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := c.Read(make([]byte, 1)); err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("a refused stream's connection: read %d, %v; want it closed", n, err)
	}
}

// TestConnCaps: connections are capped in total and per client address,
// and event streams under lower caps of their own, so that clients
// holding streams, or connections, cannot take what the API and the
// other clients need. Before, /api/events had no cap at all: 20,000
// streams took every file descriptor of the process.
func TestConnCaps(t *testing.T) {
	s := &Server{Registry: registry.New(1), MaxConns: 8, MaxConnsPerClient: 4, MaxStreams: 5, MaxStreamsPerClient: 2}
	addr := strings.TrimPrefix(startServer(t, s), "http://")
	var all []net.Conn
	from := func(ip string) net.Conn {
		c := dialFrom(t, ip, addr)
		all = append(all, c)
		return c
	}

	// One address: two streams, then the third is refused with 429 by
	// the stream cap, and its connection closed: a refused stream that
	// kept its connection held one of the slots the streams leave to the
	// API (bench/streams/run.sh: 2,048 streams and 2,048 refused ones
	// kept open, and the API answered 503).
	for i, path := range []string{"/api/events", "/events"} {
		if code := status(t, from("127.0.0.2"), path); code != 200 {
			t.Fatalf("stream %d: %d", i+1, code)
		}
	}
	c := from("127.0.0.2")
	if code := status(t, c, "/api/events"); code != http.StatusTooManyRequests {
		t.Errorf("a third stream from one address: %d, want 429", code)
	}
	closed(t, c)
	// Its third and fourth connections are served; the fifth is
	// answered 429 at once, before it sends anything, and closed.
	waitFor(t, func() bool { return s.conns.open() == 2 }, "2 connections")
	from("127.0.0.2")
	from("127.0.0.2")
	if code := status(t, from("127.0.0.2"), ""); code != http.StatusTooManyRequests {
		t.Errorf("a fifth connection from one address: %d, want 429", code)
	}

	// The streams' total cap: 5, then 503 for the next, whoever asks.
	for _, ip := range []string{"127.0.0.3", "127.0.0.3", "127.0.0.4"} {
		if code := status(t, from(ip), "/api/events"); code != 200 {
			t.Fatalf("stream from %s: %d", ip, code)
		}
	}
	c = from("127.0.0.4")
	if code := status(t, c, "/api/events"); code != http.StatusServiceUnavailable {
		t.Errorf("a sixth stream: %d, want 503", code)
	}
	closed(t, c)
	// With every stream taken, the API still answers another client: its
	// connection is the 8th.
	waitFor(t, func() bool { return s.conns.open() == 7 }, "7 connections")
	if code := status(t, from("127.0.0.5"), "/api/services"); code != 200 {
		t.Errorf("the API with the streams full: %d", code)
	}
	// The 9th connection is refused with 503.
	if code := status(t, from("127.0.0.6"), ""); code != http.StatusServiceUnavailable {
		t.Errorf("a connection beyond MaxConns: %d, want 503", code)
	}
	if s.Refused() != 2 {
		t.Errorf("Refused() = %d, want 2", s.Refused())
	}
	// Every slot comes back when its client goes.
	for _, c := range all {
		c.Close()
	}
	waitFor(t, func() bool { return s.conns.open() == 0 && s.Streams() == 0 }, "every slot to be free")
}

// TestHostCheck: on loopback the server answers only to its own names, so
// that a page of another site whose name rebinds to 127.0.0.1 cannot
// read /api/messages in a local browser (it used to accept any Host). curl
// --resolve is that browser: the attacker's name, our address.
func TestHostCheck(t *testing.T) {
	curl := testenv.NeedTool(t, "curl")
	s := &Server{Registry: registry.New(1), AllowedHosts: []string{"lab.example"}}
	base := startServer(t, s)
	_, port, _ := net.SplitHostPort(strings.TrimPrefix(base, "http://"))
	get := func(host, path string) string {
		t.Helper()
		url := "http://" + net.JoinHostPort(host, port) + path
		out, err := exec.Command(curl, "-s", "-o", "/dev/null", "-w", "%{http_code}", "--resolve", net.JoinHostPort(host, port)+":127.0.0.1", url).Output()
		if err != nil {
			t.Fatalf("curl %s: %v", url, err)
		}
		return string(out)
	}
	for host, want := range map[string]string{
		"rebind.attacker.example": "421",
		"svc.internal.evil":       "421",
		"localhost":               "200",
		"app.localhost":           "200",
		"127.0.0.1":               "200",
		"box.svc.internal":        "200",
		"BOX.SVC.INTERNAL.":       "200",
		"lab.example":             "200",
	} {
		if got := get(host, "/api/messages"); got != want {
			t.Errorf("Host %s: %s, want %s", host, got, want)
		}
	}
	r := call(t, "GET", base+"/", "", "")
	if r.status != 200 {
		t.Errorf("GET / by address: %d", r.status)
	}

	// Off loopback, the server is meant to be reached by any name (and
	// the mail needs the token there).
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	open := &Server{Registry: registry.New(1)}
	go open.Serve(t.Context(), lanListener{ln})
	t.Cleanup(func() { open.Shutdown(context.Background()) })
	_, port, _ = net.SplitHostPort(ln.Addr().String())
	if got := get("rebind.attacker.example", "/healthz"); got != "200" {
		t.Errorf("off loopback, Host rebind.attacker.example: %s", got)
	}
}

// lanListener says it listens on a LAN address, wherever it does.
type lanListener struct{ net.Listener }

func (lanListener) Addr() net.Addr { return &net.TCPAddr{IP: net.ParseIP("192.0.2.10"), Port: 8080} }
