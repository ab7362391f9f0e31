package mail

import (
	"bufio"
	"cmp"
	"errors"
	"fmt"
	"net"
	"strings"
	"time"

	"github.com/annuaire/annuaire/services/netserver"
)

// maxCommandLine is RFC 5321 section 4.5.3.1.4's limit on a command line,
// here without its line ending.
const maxCommandLine = 512

var errLineTooLong = errors.New("line too long")

// conn is one SMTP session.
type conn struct {
	srv *Receiver
	nc  *netserver.Conn
	r   *bufio.Reader
	w   *bufio.Writer

	line   []byte // reused by readLine
	errors int    // error replies so far

	// The transaction (RFC 5321 section 3.3).
	helo  string // the EHLO/HELO argument; "" before one
	inTx  bool   // MAIL accepted
	from  string
	rcpts []string
}

func (s *Receiver) idleTimeout() time.Duration { return cmp.Or(max(s.IdleTimeout, 0), 5*time.Minute) }

func (c *conn) serve() {
	s := c.srv
	c.r = bufio.NewReaderSize(c.nc, 4096)
	c.w = bufio.NewWriterSize(c.nc, 1024)
	host := s.hostname()
	if c.reply(220, host+" ESMTP annuaire mail, a receiver that never relays") != nil {
		return
	}
	for {
		if !c.nc.StartIdle(s.idleTimeout()) {
			c.reply(421, host+" Service shutting down, closing transmission channel")
			return
		}
		line, err := c.readLine()
		if !c.nc.EndIdle() {
			c.reply(421, host+" Service shutting down, closing transmission channel")
			return
		}
		switch {
		case errors.Is(err, errLineTooLong):
			err = c.reply(500, "Line too long")
		case isTimeout(err):
			c.reply(421, host+" Timeout, closing transmission channel")
			return
		case err != nil:
			return // the client went away
		default:
			var quit bool
			quit, err = c.command(line)
			if quit {
				return
			}
		}
		if err != nil {
			return
		}
		if c.errors >= cmp.Or(max(s.MaxErrors, 0), 10) {
			c.reply(421, host+" Too many errors, closing transmission channel")
			return
		}
	}
}

// command runs one command line; quit says the session is over.
func (c *conn) command(line string) (quit bool, err error) {
	s := c.srv
	cmd, ok := parseCommand(line)
	if !ok {
		return false, c.reply(500, "Syntax error, command unrecognized")
	}
	switch cmd.verb {
	case "EHLO", "HELO":
		if strings.TrimSpace(cmd.arg) == "" {
			return false, c.reply(501, "Syntax: "+cmd.verb+" hostname")
		}
		c.reset()
		c.helo = strings.TrimSpace(cmd.arg)
		greet := fmt.Sprintf("%s Hello %s", s.hostname(), c.helo)
		if cmd.verb == "HELO" {
			return false, c.reply(250, greet)
		}
		return false, c.reply(250, greet, fmt.Sprintf("SIZE %d", s.maxSize()), "8BITMIME")
	case "MAIL":
		if c.helo == "" {
			return false, c.reply(503, "Send HELO or EHLO first")
		}
		if c.inTx {
			return false, c.reply(503, "Sender already given; RSET to start over")
		}
		path, params, err := parsePathArg(cmd.arg, "FROM:")
		if err != nil {
			return false, c.replyPathError(err, "MAIL FROM:<address>")
		}
		p, err := parseMailParams(params)
		if err != nil {
			return false, c.replyPathError(err, "MAIL FROM:<address> [SIZE=n] [BODY=8BITMIME]")
		}
		if p.size > s.maxSize() {
			return false, c.reply(552, fmt.Sprintf("Message size exceeds fixed maximum message size (%d)", s.maxSize()))
		}
		c.inTx, c.from = true, path
		return false, c.reply(250, "Ok")
	case "RCPT":
		if !c.inTx {
			return false, c.reply(503, "Need MAIL before RCPT")
		}
		path, params, err := parsePathArg(cmd.arg, "TO:")
		if err == nil && path == "" {
			err = errBadAddress // <> is only a reverse path
		}
		if err == nil && len(params) > 0 {
			err = errBadParam
		}
		if err != nil {
			return false, c.replyPathError(err, "RCPT TO:<address>")
		}
		if len(c.rcpts) >= cmp.Or(max(s.MaxRecipients, 0), 100) {
			return false, c.reply(452, "Too many recipients")
		}
		c.rcpts = append(c.rcpts, path)
		return false, c.reply(250, "Ok")
	case "DATA":
		switch {
		case cmd.arg != "":
			return false, c.reply(501, "Syntax: DATA")
		case !c.inTx:
			return false, c.reply(503, "Need MAIL command")
		case len(c.rcpts) == 0:
			return false, c.reply(503, "Need RCPT command")
		}
		if err := c.reply(354, "End data with <CR><LF>.<CR><LF>"); err != nil {
			return false, err
		}
		return false, c.data()
	case "RSET":
		if cmd.arg != "" {
			return false, c.reply(501, "Syntax: RSET")
		}
		c.reset()
		return false, c.reply(250, "Ok")
	case "NOOP":
		return false, c.reply(250, "Ok")
	case "VRFY":
		if cmd.arg == "" {
			return false, c.reply(501, "Syntax: VRFY address")
		}
		// RFC 5321 section 3.5.3: 252 when the server will not say.
		return false, c.reply(252, "Cannot VRFY user, but will accept message and attempt delivery")
	case "HELP":
		return false, c.reply(214,
			"Commands: EHLO HELO MAIL RCPT DATA RSET NOOP VRFY HELP QUIT",
			"A session: EHLO me, MAIL FROM:<you@example>, RCPT TO:<someone@svc.internal>,",
			"DATA, the message, a line with a single dot, QUIT.",
			"End of HELP info")
	case "QUIT":
		c.reply(221, s.hostname()+" Service closing transmission channel")
		return true, nil
	case "EXPN", "STARTTLS", "AUTH", "BDAT", "ETRN", "TURN", "SEND", "SOML", "SAML":
		return false, c.reply(502, "Command not implemented")
	default:
		return false, c.reply(500, "Command unrecognized")
	}
}

func (c *conn) replyPathError(err error, syntax string) error {
	switch {
	case errors.Is(err, errBadParam):
		return c.reply(555, "Parameters not recognized or not implemented")
	case errors.Is(err, errPathTooLong):
		return c.reply(501, "Path too long")
	case errors.Is(err, errBadAddress):
		return c.reply(501, "Bad address syntax")
	default:
		return c.reply(501, "Syntax: "+syntax)
	}
}

// data reads a message up to the line holding a single dot, removing the
// dot-stuffing (RFC 5321 section 4.5.2). A message over MaxSize is read to
// its end and discarded, so the session stays in step with the client.
func (c *conn) data() error {
	s := c.srv
	col := newCollector(s.maxSize(), cmp.Or(max(s.PreviewSize, 0), 64<<10))
	first := true
	for {
		c.nc.SetReadDeadline(time.Now().Add(s.idleTimeout()))
		p, eol, err := c.readFragment()
		if err != nil {
			if isTimeout(err) {
				c.reply(421, s.hostname()+" Timeout, closing transmission channel")
			}
			return err
		}
		if first && len(p) > 0 && p[0] == '.' {
			if eol && len(p) == 1 {
				break
			}
			p = p[1:]
		}
		col.fragment(p, first, eol)
		first = eol
	}
	defer c.reset()
	if col.tooBig() {
		return c.reply(552, fmt.Sprintf("Message exceeds fixed maximum message size (%d)", s.maxSize()))
	}
	m := s.store.add(Message{
		From:      c.from,
		To:        append([]string(nil), c.rcpts...),
		Subject:   col.subject(),
		Size:      col.size,
		Received:  time.Now(),
		Body:      col.bodyText(),
		Truncated: col.truncated,
	}, cmp.Or(max(s.MaxMessages, 0), 100))
	s.delivered.Add(1)
	s.logger().Info("mail: received", "id", m.ID, "from", m.From, "rcpts", len(m.To), "size", m.Size, "remote", c.nc.RemoteAddr().String())
	return c.reply(250, "Ok: queued as "+m.ID)
}

func (c *conn) reset() {
	c.inTx, c.from, c.rcpts = false, "", nil
}

// reply writes one reply, multi-line when given several texts (RFC 5321
// section 4.2.1), and counts errors.
func (c *conn) reply(code int, text ...string) error {
	if code >= 500 {
		c.errors++
	}
	c.nc.SetWriteDeadline(time.Now().Add(cmp.Or(max(c.srv.WriteTimeout, 0), 30*time.Second)))
	for i, t := range text {
		sep := '-'
		if i == len(text)-1 {
			sep = ' '
		}
		fmt.Fprintf(c.w, "%d%c%s\r\n", code, sep, t)
	}
	if err := c.w.Flush(); err != nil {
		return fmt.Errorf("mail: reply to %s: %w", c.nc.RemoteAddr(), err)
	}
	return nil
}

// readFragment reads up to the next LF or a buffer's worth of a longer
// line. eol says whether the line ended; its CRLF or bare LF is removed.
func (c *conn) readFragment() (p []byte, eol bool, err error) {
	p, err = c.r.ReadSlice('\n')
	switch {
	case err == nil:
		p = p[:len(p)-1]
		if n := len(p); n > 0 && p[n-1] == '\r' {
			p = p[:n-1]
		}
		return p, true, nil
	case errors.Is(err, bufio.ErrBufferFull):
		// Keep a trailing CR for the next read: it may be half of a CRLF.
		if p[len(p)-1] == '\r' && c.r.UnreadByte() == nil {
			p = p[:len(p)-1]
		}
		return p, false, nil
	default:
		return nil, false, err
	}
}

// readLine reads a command line of at most maxCommandLine bytes; a longer
// one is read to its end and discarded.
func (c *conn) readLine() (string, error) {
	c.line = c.line[:0]
	long := false
	for {
		p, eol, err := c.readFragment()
		if err != nil {
			return "", err
		}
		if len(c.line)+len(p) > maxCommandLine {
			long = true
		} else {
			c.line = append(c.line, p...)
		}
		if eol {
			if long {
				return "", errLineTooLong
			}
			return string(c.line), nil
		}
	}
}

func (s *Receiver) maxSize() int { return cmp.Or(max(s.MaxSize, 0), 1<<20) }

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}
