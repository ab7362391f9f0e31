package mail

import (
	"bytes"
	"io"
	"log/slog"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/services/netserver"
)

// FuzzParseCommand checks that the command, path and parameter parsers
// never panic and keep their promises on any line.
func FuzzParseCommand(f *testing.F) {
	for _, s := range []string{"EHLO x", "MAIL FROM:<a@b> SIZE=10", "rcpt to:<\"a b\"@c>", "MAIL FROM:<@r:a@b>", "DATA"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, line string) {
		cmd, ok := parseCommand(line)
		if ok && (cmd.verb == "" || cmd.verb != strings.ToUpper(cmd.verb) || strings.ContainsAny(cmd.verb, " \r\n")) {
			t.Fatalf("verb %q from %q", cmd.verb, line)
		}
		for _, prefix := range []string{"FROM:", "TO:"} {
			path, params, err := parsePathArg(cmd.arg, prefix)
			if err != nil {
				continue
			}
			if len(path)+2 > maxPath || strings.ContainsAny(path, "\r\n<") {
				t.Fatalf("path %q from %q", path, line)
			}
			if p, err := parseMailParams(params); err == nil && p.size < -1 {
				t.Fatalf("size %d from %q", p.size, line)
			}
		}
	})
}

// FuzzSession runs a whole session on arbitrary client bytes: it must end
// without panic once the input is exhausted.
func FuzzSession(f *testing.F) {
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b>\r\nRCPT TO:<c@d>\r\nDATA\r\nSubject: s\r\n\r\n..x\r\n.\r\nQUIT\r\n"))
	f.Add([]byte("helo x\nmail from:<>\nrcpt to:<postmaster>\ndata\nhello\n.\n"))
	f.Add([]byte("EHLO x\r\nMAIL FROM:<a@b> SIZE=5\r\nRCPT TO:<c@d>\r\nDATA\r\n" + strings.Repeat("z", 5000) + "\r\n.\r\n"))
	f.Fuzz(func(t *testing.T, in []byte) {
		s := &Receiver{MaxSize: 2000, MaxErrors: 1000, Logger: slog.New(slog.DiscardHandler)}
		c := &conn{srv: s, nc: &netserver.Conn{Conn: &scriptConn{in: bytes.NewReader(in)}}}
		c.serve()
		for _, m := range s.Messages() {
			if m.Size > 2000 {
				t.Fatalf("kept a message of %d bytes", m.Size)
			}
		}
	})
}

// scriptConn is a net.Conn that reads a fixed script and discards writes.
type scriptConn struct{ in io.Reader }

func (c *scriptConn) Read(p []byte) (int, error)       { return c.in.Read(p) }
func (c *scriptConn) Write(p []byte) (int, error)      { return len(p), nil }
func (c *scriptConn) Close() error                     { return nil }
func (c *scriptConn) LocalAddr() net.Addr              { return &net.TCPAddr{} }
func (c *scriptConn) RemoteAddr() net.Addr             { return &net.TCPAddr{} }
func (c *scriptConn) SetDeadline(time.Time) error      { return nil }
func (c *scriptConn) SetReadDeadline(time.Time) error  { return nil }
func (c *scriptConn) SetWriteDeadline(time.Time) error { return nil }
