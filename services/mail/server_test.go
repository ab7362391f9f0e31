package mail

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/smtp"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/services/netserver"
)

// start serves r on a fresh loopback port, as annuaire hosts it (a
// netserver.Server calling its Handle), and returns its address; the
// server stops when the test ends.
func start(t *testing.T, r *Receiver) string {
	t.Helper()
	return startOn(t, serverFor(r))
}

// serverFor is the connection server annuaire runs r under.
func serverFor(r *Receiver) *netserver.Server {
	return &netserver.Server{Name: "mail", Handle: r.Handle, Refusal: r.Refusal()}
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

// client is a raw SMTP client, as a human with nc would be.
type client struct {
	t   *testing.T
	nc  net.Conn
	r   *bufio.Reader
	eol string
}

func dial(t *testing.T, addr string) *client {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(20 * time.Second))
	return &client{t: t, nc: nc, r: bufio.NewReader(nc), eol: "\r\n"}
}

func (c *client) send(lines ...string) {
	c.t.Helper()
	for _, l := range lines {
		if _, err := io.WriteString(c.nc, l+c.eol); err != nil {
			c.t.Fatalf("send %q: %v", l, err)
		}
	}
}

// reply reads one whole reply and returns its code and its last line's
// text.
func (c *client) reply() (int, string) {
	c.t.Helper()
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			c.t.Fatalf("read reply: %v (got %q)", err, line)
		}
		if len(line) < 5 || !strings.HasSuffix(line, "\r\n") {
			c.t.Fatalf("malformed reply line %q", line)
		}
		code, err := strconv.Atoi(line[:3])
		if err != nil {
			c.t.Fatalf("malformed reply line %q", line)
		}
		if line[3] == ' ' {
			return code, strings.TrimRight(line[4:], "\r\n")
		}
	}
}

func (c *client) expect(code int) string {
	c.t.Helper()
	got, text := c.reply()
	if got != code {
		c.t.Fatalf("got %d %s, want %d", got, text, code)
	}
	return text
}

// do sends a command and checks the reply's code.
func (c *client) do(line string, code int) string {
	c.t.Helper()
	c.send(line)
	return c.expect(code)
}

func (c *client) expectEOF() {
	c.t.Helper()
	if line, err := c.r.ReadString('\n'); err != io.EOF {
		c.t.Fatalf("want EOF, got %q, %v", line, err)
	}
}

func TestNetSMTP(t *testing.T) {
	s := &Receiver{}
	addr := start(t, s)
	msg := "From: me@example.org\r\nSubject: =?UTF-8?Q?caf=C3=A9_au_lait?=\r\n\r\nHello.\r\n.dot first\r\n"
	if err := smtp.SendMail(addr, nil, "me@example.org", []string{"a@svc.internal", "b@svc.internal"}, []byte(msg)); err != nil {
		t.Fatal(err)
	}
	ms := s.Messages()
	if len(ms) != 1 {
		t.Fatalf("%d messages, want 1", len(ms))
	}
	m := ms[0]
	if m.ID == "" || m.From != "me@example.org" || strings.Join(m.To, ",") != "a@svc.internal,b@svc.internal" ||
		m.Subject != "café au lait" || m.Body != "Hello.\r\n.dot first\r\n" || m.Size != len(msg) || m.Received.IsZero() {
		t.Errorf("got %+v", m)
	}
	if n := s.Delivered(); n != 1 {
		t.Errorf("%d delivered, want 1", n)
	}
}

// TestHuman is the dialogue a student types into nc: bare LF line endings,
// lower-case verbs, a line starting with a dot.
func TestHuman(t *testing.T) {
	for _, eol := range []string{"\n", "\r\n"} {
		t.Run(strconv.Quote(eol), func(t *testing.T) {
			s := &Receiver{Hostname: "mx.svc.internal"}
			c := dial(t, start(t, s))
			c.eol = eol
			if text := c.expect(220); !strings.HasPrefix(text, "mx.svc.internal ") {
				t.Errorf("greeting %q", text)
			}
			c.do("helo student", 250)
			c.do("mail from:<student@lab>", 250)
			c.do("rcpt to:<teacher@svc.internal>", 250)
			c.do("data", 354)
			c.send("Subject: test", "", "first line", "..leading dot", ".")
			c.expect(250)
			c.do("quit", 221)
			c.expectEOF()
			ms := s.Messages()
			if len(ms) != 1 || ms[0].Subject != "test" || ms[0].Body != "first line\r\n.leading dot\r\n" {
				t.Errorf("got %+v", ms)
			}
		})
	}
}

func TestNoHeader(t *testing.T) {
	s := &Receiver{}
	c := dial(t, start(t, s))
	c.expect(220)
	c.do("HELO x", 250)
	c.do("MAIL FROM:<>", 250)
	c.do("RCPT TO:<postmaster>", 250)
	c.do("DATA", 354)
	c.send("hello world", ".")
	c.expect(250)
	if m := s.Messages()[0]; m.From != "" || m.To[0] != "postmaster" || m.Subject != "" || m.Body != "hello world\r\n" {
		t.Errorf("got %+v", m)
	}
}

func TestEHLO(t *testing.T) {
	c := dial(t, start(t, &Receiver{MaxSize: 5000}))
	c.expect(220)
	c.send("EHLO client.example")
	var lines []string
	for {
		line, err := c.r.ReadString('\n')
		if err != nil {
			t.Fatal(err)
		}
		lines = append(lines, line)
		if line[3] == ' ' {
			break
		}
	}
	want := "250-annuaire Hello client.example\r\n250-SIZE 5000\r\n250 8BITMIME\r\n"
	if got := strings.Join(lines, ""); got != want {
		t.Errorf("EHLO reply\n%q\nwant\n%q", got, want)
	}
}

// TestSequence checks the replies to commands out of order or malformed.
func TestSequence(t *testing.T) {
	tests := []struct {
		name  string
		lines []string // all but the last must succeed
		code  int      // the last line's reply
	}{
		{"MailBeforeHelo", []string{"MAIL FROM:<a@b>"}, 503},
		{"RcptBeforeMail", []string{"EHLO x", "RCPT TO:<a@b>"}, 503},
		{"DataBeforeMail", []string{"EHLO x", "DATA"}, 503},
		{"DataBeforeRcpt", []string{"EHLO x", "MAIL FROM:<a@b>", "DATA"}, 503},
		{"NestedMail", []string{"EHLO x", "MAIL FROM:<a@b>", "MAIL FROM:<a@b>"}, 503},
		{"RsetThenRcpt", []string{"EHLO x", "MAIL FROM:<a@b>", "RSET", "RCPT TO:<c@d>"}, 503},
		{"HeloResets", []string{"EHLO x", "MAIL FROM:<a@b>", "HELO y", "RCPT TO:<c@d>"}, 503},
		{"HeloNoArg", []string{"HELO"}, 501},
		{"Unknown", []string{"FROB"}, 500},
		{"BadVerb", []string{"GET / HTTP/1.1"}, 500},
		{"Empty", []string{""}, 500},
		{"NotImplemented", []string{"EXPN staff"}, 502},
		{"Starttls", []string{"EHLO x", "STARTTLS"}, 502},
		{"Vrfy", []string{"VRFY someone"}, 252},
		{"VrfyNoArg", []string{"VRFY"}, 501},
		{"Noop", []string{"NOOP anything"}, 250},
		{"Help", []string{"HELP"}, 214},
		{"MailSyntax", []string{"EHLO x", "MAIL <a@b>"}, 501},
		{"MailBadAddress", []string{"EHLO x", "MAIL FROM:<a b@c>"}, 501},
		{"MailUnclosed", []string{"EHLO x", "MAIL FROM:<a@b"}, 501},
		{"MailUnknownParam", []string{"EHLO x", "MAIL FROM:<a@b> FOO=1"}, 555},
		{"MailBody", []string{"EHLO x", "MAIL FROM:<a@b> BODY=8BITMIME SIZE=10"}, 250},
		{"MailNoBrackets", []string{"EHLO x", "MAIL FROM: a@b"}, 250},
		{"SourceRoute", []string{"EHLO x", "MAIL FROM:<@relay.example:a@b>"}, 250},
		{"QuotedLocal", []string{"EHLO x", `MAIL FROM:<"a >b"@c>`}, 250},
		{"RcptNull", []string{"EHLO x", "MAIL FROM:<a@b>", "RCPT TO:<>"}, 501},
		{"RcptParam", []string{"EHLO x", "MAIL FROM:<a@b>", "RCPT TO:<c@d> NOTIFY=NEVER"}, 555},
		{"DataArg", []string{"EHLO x", "MAIL FROM:<a@b>", "RCPT TO:<c@d>", "DATA now"}, 501},
		{"LongPath", []string{"EHLO x", "MAIL FROM:<" + strings.Repeat("a", 250) + "@b>"}, 501},
		{"LineTooLong", []string{"EHLO x", "NOOP " + strings.Repeat("x", 600)}, 500},
	}
	addr := start(t, &Receiver{})
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			c := dial(t, addr)
			c.expect(220)
			for i, l := range tt.lines {
				code, text := 0, ""
				c.send(l)
				code, text = c.reply()
				if i == len(tt.lines)-1 {
					if code != tt.code {
						t.Fatalf("%q: got %d %s, want %d", l, code, text, tt.code)
					}
				} else if code >= 400 {
					t.Fatalf("%q: got %d %s", l, code, text)
				}
			}
			c.do("NOOP", 250) // the session goes on
		})
	}
}

func TestSizeLimit(t *testing.T) {
	s := &Receiver{MaxSize: 1000}
	c := dial(t, start(t, s))
	c.expect(220)
	c.do("EHLO x", 250)
	c.do("MAIL FROM:<a@b> SIZE=1001", 552)
	c.do("MAIL FROM:<a@b> SIZE=99999999999999999999999999", 552)
	c.do("MAIL FROM:<a@b> SIZE=1000", 250)
	c.do("RCPT TO:<c@d>", 250)
	c.do("DATA", 354)
	line := strings.Repeat("x", 98) // 100 bytes with CRLF
	for range 11 {
		c.send(line)
	}
	c.send(".")
	c.expect(552)
	if n := len(s.Messages()); n != 0 {
		t.Fatalf("%d messages kept, want 0", n)
	}
	// The session is in step and the transaction was reset.
	c.do("RCPT TO:<c@d>", 503)
	c.do("MAIL FROM:<a@b>", 250)
	c.do("RCPT TO:<c@d>", 250)
	c.do("DATA", 354)
	for range 10 {
		c.send(line)
	}
	c.send(".")
	c.expect(250)
	if ms := s.Messages(); len(ms) != 1 || ms[0].Size != 1000 {
		t.Fatalf("got %+v", ms)
	}
}

// TestLongDataLine sends one data line longer than the read buffer, with
// its CRLF split over the buffer's edge.
func TestLongDataLine(t *testing.T) {
	s := &Receiver{PreviewSize: 100}
	c := dial(t, start(t, s))
	c.expect(220)
	c.do("EHLO x", 250)
	c.do("MAIL FROM:<a@b>", 250)
	c.do("RCPT TO:<c@d>", 250)
	c.do("DATA", 354)
	c.send("", strings.Repeat("y", 4095)+"\r\n.")
	c.expect(250)
	m := s.Messages()[0]
	if m.Size != 2+4095+2 || !m.Truncated || len(m.Body) != 100 {
		t.Errorf("size %d truncated %v body %d bytes", m.Size, m.Truncated, len(m.Body))
	}
}

func TestTooManyRecipients(t *testing.T) {
	c := dial(t, start(t, &Receiver{}))
	c.expect(220)
	c.do("EHLO x", 250)
	c.do("MAIL FROM:<a@b>", 250)
	for i := range 100 {
		c.do(fmt.Sprintf("RCPT TO:<r%d@svc.internal>", i), 250)
	}
	c.do("RCPT TO:<one.more@svc.internal>", 452)
	c.do("DATA", 354)
	c.send(".")
	c.expect(250)
}

func TestTooManyErrors(t *testing.T) {
	c := dial(t, start(t, &Receiver{MaxErrors: 3}))
	c.expect(220)
	c.do("FROB", 500)
	c.do("FROB", 500)
	c.send("FROB")
	c.expect(500)
	c.expect(421)
	c.expectEOF()
}

func TestMaxConns(t *testing.T) {
	s := serverFor(&Receiver{})
	s.MaxConns = 1
	addr := startOn(t, s)
	c1 := dial(t, addr)
	c1.expect(220)
	c2 := dial(t, addr)
	c2.expect(421)
	c2.expectEOF()
	c1.do("QUIT", 221)
	c1.expectEOF()
	// The slot is free again once the first session ended.
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Active != 0 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	c3 := dial(t, addr)
	c3.expect(220)
	if st := s.Stats(); st.Accepted != 2 || st.Rejected != 1 || st.Active != 1 {
		t.Errorf("stats %+v", st)
	}
}

func TestIdleTimeout(t *testing.T) {
	c := dial(t, start(t, &Receiver{IdleTimeout: 100 * time.Millisecond}))
	c.expect(220)
	c.expect(421)
	c.expectEOF()
}

func TestMessagesBounded(t *testing.T) {
	s := &Receiver{MaxMessages: 3}
	addr := start(t, s)
	for i := 1; i <= 5; i++ {
		msg := fmt.Sprintf("Subject: m%d\r\n\r\nbody\r\n", i)
		if err := smtp.SendMail(addr, nil, "a@b", []string{"c@d"}, []byte(msg)); err != nil {
			t.Fatal(err)
		}
	}
	var got []string
	for _, m := range s.Messages() {
		got = append(got, m.ID+":"+m.Subject)
	}
	if strings.Join(got, " ") != "5:m5 4:m4 3:m3" {
		t.Errorf("got %v", got)
	}
}

// TestShutdown: an idle session is told 421, a session in the middle of
// DATA finishes its message first, and Shutdown waits for both.
func TestShutdown(t *testing.T) {
	r := &Receiver{}
	s := serverFor(r)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(context.Background(), ln) }()
	addr := ln.Addr().String()

	idle := dial(t, addr)
	idle.expect(220)
	idle.do("EHLO idle", 250)
	busy := dial(t, addr)
	busy.expect(220)
	busy.do("EHLO busy", 250)
	busy.do("MAIL FROM:<a@b>", 250)
	busy.do("RCPT TO:<c@d>", 250)
	busy.do("DATA", 354)
	busy.send("Subject: in flight", "", "part one")

	shut := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut <- s.Shutdown(ctx)
	}()
	idle.expect(421)
	idle.expectEOF()
	select {
	case err := <-shut:
		t.Fatalf("Shutdown returned %v with a message in flight", err)
	case <-time.After(100 * time.Millisecond):
	}
	busy.send("part two", ".")
	busy.expect(250)
	busy.expect(421)
	busy.expectEOF()
	if err := <-shut; err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if err := <-served; !errors.Is(err, netserver.ErrServerClosed) {
		t.Fatalf("Serve: %v", err)
	}
	if ms := r.Messages(); len(ms) != 1 || ms[0].Subject != "in flight" {
		t.Errorf("got %+v", ms)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if _, err := net.Dial("tcp", addr); err == nil {
		t.Error("listener still open")
	}
	if err := s.Serve(context.Background(), ln); !errors.Is(err, netserver.ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v", err)
	}
}

// TestShutdownDeadline: a client that never finishes its message is cut
// off when Shutdown's context ends.
func TestShutdownDeadline(t *testing.T) {
	s := serverFor(&Receiver{})
	addr := startOn(t, s)
	c := dial(t, addr)
	c.expect(220)
	c.do("EHLO x", 250)
	c.do("MAIL FROM:<a@b>", 250)
	c.do("RCPT TO:<c@d>", 250)
	c.do("DATA", 354)
	ctx, cancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer cancel()
	if err := s.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("Shutdown: %v", err)
	}
	if _, err := c.r.ReadString('\n'); err == nil {
		t.Fatal("connection still open")
	}
}

// TestServeContext: Serve returns nil once its context ends, after telling
// sessions to go.
func TestServeContext(t *testing.T) {
	s := serverFor(&Receiver{})
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	c := dial(t, ln.Addr().String())
	c.expect(220)
	cancel()
	c.expect(421)
	if err := <-served; err != nil {
		t.Fatalf("Serve: %v", err)
	}
}

// TestReadFragment splits a CRLF over the edge of the read buffer: the CR
// must not be taken as data.
func TestReadFragment(t *testing.T) {
	in := strings.Repeat("y", 4095) + "\r\n.\r\nbare\nlast"
	c := &conn{r: bufio.NewReaderSize(strings.NewReader(in), 4096)}
	var got []string
	for {
		p, eol, err := c.readFragment()
		if err != nil {
			break
		}
		got = append(got, fmt.Sprintf("%d:%v", len(p), eol))
	}
	if want := "4095:false 0:true 1:true 4:true"; strings.Join(got, " ") != want {
		t.Errorf("got %v, want %s", got, want)
	}
}
