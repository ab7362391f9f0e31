package mail

import (
	"bufio"
	"bytes"
	"io"
	"mime"
	"net/textproto"
	"strconv"
	"strings"
	"sync"
	"time"
	"unicode/utf8"

	"github.com/annuaire/annuaire/registry"
)

// Message is one received message as the directory shows it.
type Message struct {
	ID       string    `json:"id"`
	From     string    `json:"from"` // the envelope sender (MAIL FROM); "" for <>
	To       []string  `json:"to"`   // the envelope recipients (RCPT TO)
	Subject  string    `json:"subject"`
	Size     int       `json:"size"` // bytes, headers included, CRLF line endings
	Received time.Time `json:"received"`
	// Body is the message body after its header, at most
	// Receiver.PreviewSize bytes of it; Truncated says whether some was cut.
	// It is the bytes received: 8BITMIME lets a body be in any charset
	// (RFC 6152), and JSON carries one that is not UTF-8 as
	// {"base64": "..."} rather than with U+FFFD for each byte it cannot hold.
	Body      registry.Octets `json:"body"`
	Truncated bool            `json:"truncated,omitempty"`
}

// Messages returns the kept messages, newest first. It is safe for
// concurrent use; the caller owns the returned slice.
func (s *Receiver) Messages() []Message {
	return s.store.list()
}

// store keeps the last messages in a ring.
type store struct {
	mu   sync.Mutex // guards the fields below
	ring []Message  // oldest at next (once full)
	next int
	seq  uint64
}

// add assigns m its ID, keeps it, and drops the oldest beyond keep.
func (st *store) add(m Message, keep int) Message {
	st.mu.Lock()
	defer st.mu.Unlock()
	st.seq++
	m.ID = strconv.FormatUint(st.seq, 10)
	if len(st.ring) < keep {
		st.ring = append(st.ring, m)
		return m
	}
	st.ring[st.next] = m
	st.next = (st.next + 1) % len(st.ring)
	return m
}

func (st *store) list() []Message {
	st.mu.Lock()
	defer st.mu.Unlock()
	out := make([]Message, 0, len(st.ring))
	for i := range st.ring {
		m := st.ring[(st.next+len(st.ring)-1-i)%len(st.ring)]
		m.To = append([]string(nil), m.To...)
		out = append(out, m)
	}
	return out
}

// maxHeader bounds the header bytes a session keeps to find the Subject;
// past it the header is still counted but no longer kept.
const maxHeader = 16 << 10

// collector takes a message line by line as DATA arrives and keeps only
// what Message needs, so that a session's memory does not grow with the
// message's size.
type collector struct {
	size, limit int  // bytes seen; the largest message accepted
	preview     int  // body bytes to keep
	inHeader    bool // still in the header section
	header      bytes.Buffer
	body        bytes.Buffer
	truncated   bool
}

func newCollector(limit, preview int) *collector {
	return &collector{limit: limit, preview: preview, inHeader: true}
}

// tooBig reports whether the message has outgrown its limit.
func (c *collector) tooBig() bool { return c.size > c.limit }

// fragment adds part of a line: first says it starts a line, eol that it
// ends one (the CRLF itself is not in p).
func (c *collector) fragment(p []byte, first, eol bool) {
	c.size += len(p)
	if eol {
		c.size += 2
	}
	if c.tooBig() {
		return
	}
	if c.inHeader && first {
		switch {
		case len(p) == 0 && eol:
			c.inHeader = false // the blank line between header and body
			return
		case isHeaderStart(p) || (c.header.Len() > 0 && (p[0] == ' ' || p[0] == '\t')):
		default:
			// Not a header field: a human typed a message without one.
			c.inHeader = false
		}
	}
	buf, capacity := &c.body, c.preview
	if c.inHeader {
		buf, capacity = &c.header, maxHeader
	}
	keep := p
	if eol {
		keep = append(p[:len(p):len(p)], '\r', '\n')
	}
	if room := capacity - buf.Len(); len(keep) > room {
		keep = keep[:max(room, 0)]
		if !c.inHeader {
			c.truncated = true
		}
	}
	buf.Write(keep)
}

// isHeaderStart reports whether p starts with "field-name:" (RFC 5322
// section 2.2: printable ASCII except colon, then a colon).
func isHeaderStart(p []byte) bool {
	i := bytes.IndexByte(p, ':')
	if i <= 0 {
		return false
	}
	for _, c := range p[:i] {
		if c <= ' ' || c > '~' {
			return false
		}
	}
	return true
}

// subject returns the decoded Subject, or the raw one if it is not simple
// RFC 2047 text the standard library can decode.
func (c *collector) subject() string {
	// The header is kept without its closing blank line; add one so a
	// whole header reads without error.
	r := textproto.NewReader(bufio.NewReader(io.MultiReader(bytes.NewReader(c.header.Bytes()), strings.NewReader("\r\n"))))
	h, _ := r.ReadMIMEHeader() // a partial header is still useful
	raw := h.Get("Subject")
	dec := new(mime.WordDecoder)
	s, err := dec.DecodeHeader(raw)
	if err != nil {
		s = raw
	}
	if !utf8.ValidString(s) {
		s = strings.ToValidUTF8(s, "\uFFFD")
	}
	return s
}

// bodyText returns the kept body's bytes. A UTF-8 body cut by the
// preview does not end in the middle of a character, so that it stays
// UTF-8, a JSON string.
func (c *collector) bodyText() registry.Octets {
	b := c.body.Bytes()
	if c.truncated {
		for i := 1; i < utf8.UTFMax && i <= len(b); i++ {
			if utf8.Valid(b[:len(b)-i]) && !utf8.Valid(b) {
				b = b[:len(b)-i]
				break
			}
		}
	}
	return registry.Octets(b)
}
