package telnet

import (
	"bufio"
	"errors"
	"strings"
)

// Telnet commands, RFC 854 page 14.
const (
	cmdSE   = 240 // end of subnegotiation
	cmdNOP  = 241
	cmdDM   = 242 // data mark
	cmdBRK  = 243
	cmdIP   = 244 // interrupt process
	cmdAO   = 245 // abort output
	cmdAYT  = 246 // are you there
	cmdEC   = 247 // erase character
	cmdEL   = 248 // erase line
	cmdGA   = 249 // go ahead
	cmdSB   = 250 // begin subnegotiation
	cmdWILL = 251
	cmdWONT = 252
	cmdDO   = 253
	cmdDONT = 254
	cmdIAC  = 255 // interpret as command
)

// The decoder's states.
const (
	stData  = iota
	stCR    // after a CR: LF or NUL completes the line ending
	stIAC   // after IAC
	stOpt   // after IAC WILL/WONT/DO/DONT, waiting for the option
	stSB    // inside IAC SB ... IAC SE
	stSBIAC // IAC inside a subnegotiation
)

var (
	errLineTooLong = errors.New("line too long")
	errInterrupt   = errors.New("interrupted") // the client sent IAC IP
)

// nvt reads lines from, and writes text to, a telnet peer. Its replies to
// negotiation are buffered in w and flushed before each blocking read, so
// the peer sees them without one write per byte.
type nvt struct {
	r     *bufio.Reader
	w     *bufio.Writer
	flush func() error // flushes w, with a write deadline

	state int
	verb  byte // WILL/WONT/DO/DONT while in stOpt
	line  []byte
}

// readLine returns the next line, without its end: CR LF, CR NUL (RFC 854
// lets a client send either for its Enter key), or a bare LF or CR from a
// client that is not a real telnet. A line over max bytes is read to its
// end and reported as errLineTooLong.
func (n *nvt) readLine(max int) (string, error) {
	n.line = n.line[:0]
	long := false
	for {
		if n.r.Buffered() == 0 {
			if err := n.flush(); err != nil {
				return "", err
			}
		}
		b, err := n.r.ReadByte()
		if err != nil {
			return "", err
		}
		data, eol, err := n.decode(b)
		switch {
		case err != nil:
			return "", err
		case eol:
			if long {
				return "", errLineTooLong
			}
			return string(n.line), nil
		case data < 0:
		case data == 0x08 || data == 0x7f: // BS, DEL: the user's tty did not edit
			n.erase()
		case data < 0x20 && data != '\t':
			// Other controls have no place in a command.
		case len(n.line) >= max:
			long = true
		default:
			n.line = append(n.line, byte(data))
		}
	}
}

func (n *nvt) erase() {
	if len(n.line) > 0 {
		n.line = n.line[:len(n.line)-1]
	}
}

// decode takes one byte from the peer. It returns the data byte it makes,
// or -1 for none, and whether a line ended.
func (n *nvt) decode(b byte) (data int, eol bool, err error) {
	switch n.state {
	case stCR:
		n.state = stData
		if b == '\n' || b == 0 {
			return -1, false, nil // the rest of the line end already seen
		}
		return n.decode(b)
	case stData:
		switch b {
		case cmdIAC:
			n.state = stIAC
			return -1, false, nil
		case '\r':
			n.state = stCR
			return -1, true, nil
		case '\n':
			return -1, true, nil
		}
		return int(b), false, nil
	case stIAC:
		n.state = stData
		switch b {
		case cmdIAC:
			return cmdIAC, false, nil // IAC IAC is a data byte 255
		case cmdWILL, cmdWONT, cmdDO, cmdDONT:
			n.state, n.verb = stOpt, b
		case cmdSB:
			n.state = stSB
		case cmdAYT:
			n.w.WriteString("\r\n[annuaire: yes]\r\n")
		case cmdEC:
			n.erase()
		case cmdEL:
			n.line = n.line[:0]
		case cmdIP:
			return -1, false, errInterrupt
		}
		// NOP, DM, BRK, AO, GA, SE out of place: nothing to do.
		return -1, false, nil
	case stOpt:
		n.state = stData
		n.negotiate(n.verb, b)
		return -1, false, nil
	case stSB:
		if b == cmdIAC {
			n.state = stSBIAC
		}
		// The content is dropped unread: no option is enabled, so no
		// subnegotiation concerns this server, and nothing is kept.
		return -1, false, nil
	case stSBIAC:
		switch b {
		case cmdSE:
			n.state = stData
		case cmdIAC:
			n.state = stSB // an escaped 255 inside the subnegotiation
		default:
			// A command inside SB means the peer forgot SE; end the
			// subnegotiation and take the command.
			n.state = stIAC
			return n.decode(b)
		}
		return -1, false, nil
	}
	return -1, false, nil
}

// negotiate answers an option request. Every option stays disabled on
// both sides: a request to enable one (WILL, DO) is refused, and a WONT or
// DONT is never answered because it cannot change a disabled option —
// answering it is how two parties loop (RFC 854 page 3, RFC 1143).
func (n *nvt) negotiate(verb, opt byte) {
	switch verb {
	case cmdWILL:
		n.w.Write([]byte{cmdIAC, cmdDONT, opt})
	case cmdDO:
		n.w.Write([]byte{cmdIAC, cmdWONT, opt})
	}
}

// nvtText turns text into NVT output: line ends become CRLF, a lone CR
// becomes CR NUL, and byte 255 is doubled (RFC 854 pages 11-12).
func nvtText(s string) string {
	s = strings.ReplaceAll(s, "\r\n", "\n")
	var b strings.Builder
	b.Grow(len(s) + len(s)/16)
	for i := 0; i < len(s); i++ {
		switch c := s[i]; c {
		case '\n':
			b.WriteString("\r\n")
		case '\r':
			b.WriteString("\r\x00")
		case cmdIAC:
			b.WriteString("\xff\xff")
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}
