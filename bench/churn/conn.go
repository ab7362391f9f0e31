package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"time"
)

const (
	maxBody        = 1 << 20 // bytes of an answer read at most
	requestTimeout = 10 * time.Second
)

// api is what the workers share: where the server is and the parts of
// every request that never change, rendered once.
type api struct {
	addr     string // host:port to dial
	postHead string // POST request line and headers, up to the Content-Length value
	delHead  string // DELETE request line up to the id
	delTail  string // the rest of a DELETE: version and headers
}

func newAPI(rawURL, token string) (*api, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return nil, fmt.Errorf("-api: %w", err)
	}
	if u.Scheme != "http" || u.Host == "" {
		return nil, fmt.Errorf("-api %q: want http://HOST:PORT (this client speaks plain HTTP/1.1 only)", rawURL)
	}
	// The token goes into a header as it is: a line break in it would
	// end the header early and turn the rest into another one.
	if token == "" || strings.ContainsFunc(token, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
		return nil, errors.New("the token file must hold one line of printable characters")
	}
	addr := u.Host
	if u.Port() == "" {
		addr = net.JoinHostPort(u.Hostname(), "80")
	}
	path := strings.TrimSuffix(u.EscapedPath(), "/") + "/api/services"
	headers := "Host: " + u.Host + "\r\nAuthorization: Bearer " + token + "\r\n"
	return &api{
		addr:     addr,
		postHead: "POST " + path + " HTTP/1.1\r\n" + headers + "Content-Type: application/json\r\nContent-Length: ",
		delHead:  "DELETE " + path + "/",
		delTail:  " HTTP/1.1\r\n" + headers + "\r\n",
	}, nil
}

// conn is one kept-alive HTTP/1.1 connection to the API, with the buffers
// its requests and answers are built and read in, reused from one request
// to the next: a write costs one write(2) and a read or two, and allocates
// nothing but a registration's id. It is redialled after an error or an
// answer that closes it. It is not safe for concurrent use.
type conn struct {
	api  *api
	nc   net.Conn
	s    *sock
	br   *bufio.Reader
	used bool // nc has carried an answer: the server may close it while idle
	req  []byte
	body []byte // the last answer's body
}

// register sends a registration (a JSON object) and returns the id the
// server gave it.
func (c *conn) register(reg []byte, deadline time.Time) (string, error) {
	r := append(c.req[:0], c.api.postHead...)
	r = strconv.AppendInt(r, int64(len(reg)), 10)
	r = append(r, "\r\n\r\n"...)
	r = append(r, reg...)
	c.req = r
	status, body, err := c.roundTrip(r, deadline)
	if err != nil {
		return "", fmt.Errorf("POST: %w", err)
	}
	if status != http.StatusCreated {
		return "", newStatusError(http.MethodPost, status, body)
	}
	id := idOf(body)
	if id == "" {
		return "", fmt.Errorf("POST /api/services: no id in the answer %.100q", body)
	}
	return id, nil
}

func (c *conn) deregister(id string, deadline time.Time) error {
	r := append(c.req[:0], c.api.delHead...)
	r = append(r, url.PathEscape(id)...)
	r = append(r, c.api.delTail...)
	c.req = r
	status, body, err := c.roundTrip(r, deadline)
	if err != nil {
		return fmt.Errorf("DELETE: %w", err)
	}
	if status != http.StatusNoContent {
		return newStatusError(http.MethodDelete, status, body)
	}
	return nil
}

// idOf finds the id in a registration's answer. The server writes it as
// the object's first field, which a few bytes of scanning confirm; any
// other shape (an escape in the id, another order) goes through
// encoding/json.
func idOf(body []byte) string {
	b := bytes.TrimLeft(body, " \t\r\n")
	if rest, ok := bytes.CutPrefix(b, []byte("{")); ok {
		rest = bytes.TrimLeft(rest, " \t\r\n")
		if rest, ok = bytes.CutPrefix(rest, []byte(`"id"`)); ok {
			rest = bytes.TrimLeft(rest, " \t\r\n")
			if rest, ok = bytes.CutPrefix(rest, []byte(":")); ok {
				rest = bytes.TrimLeft(rest, " \t\r\n")
				if rest, ok = bytes.CutPrefix(rest, []byte(`"`)); ok {
					if i := bytes.IndexAny(rest, "\"\\"); i > 0 && rest[i] == '"' {
						return string(rest[:i])
					}
				}
			}
		}
	}
	var out struct {
		ID string `json:"id"`
	}
	if json.Unmarshal(body, &out) != nil {
		return ""
	}
	return out.ID
}

// roundTrip sends one whole request and reads its answer, by deadline.
// The body it returns is valid until the next call. A request that fails
// before any byte of an answer on a connection that had carried others is
// sent once more on a new one, as net/http does: the server may have
// closed it while idle. For churn even a registration can be: it names
// its instance, so a second one is the same instance again.
func (c *conn) roundTrip(req []byte, deadline time.Time) (int, []byte, error) {
	for {
		if c.nc == nil {
			if err := c.dial(deadline); err != nil {
				return 0, nil, err
			}
		}
		retry := c.used
		status, body, answered, err := c.exchange(req, deadline)
		if err == nil {
			return status, body, nil
		}
		c.close()
		if !retry || answered {
			return 0, nil, err
		}
	}
}

func (c *conn) dial(deadline time.Time) error {
	nc, err := net.DialTimeout("tcp", c.api.addr, time.Until(deadline))
	if err != nil {
		return err
	}
	s, err := newSock(nc)
	if err != nil {
		nc.Close()
		return err
	}
	c.nc, c.s, c.used = nc, s, false
	if c.br == nil {
		c.br = bufio.NewReaderSize(s, 4096)
	} else {
		c.br.Reset(s)
	}
	return nil
}

func (c *conn) close() {
	if c.nc != nil {
		c.nc.Close()
		c.nc = nil
	}
}

// exchange writes req and reads the answer: the status line, the headers
// that frame the body (Content-Length, Transfer-Encoding, Connection) and
// the body. answered tells whether any of the answer had come when it
// failed.
func (c *conn) exchange(req []byte, deadline time.Time) (status int, body []byte, answered bool, err error) {
	if err := c.nc.SetDeadline(deadline); err != nil {
		return 0, nil, false, err
	}
	if _, err := c.s.Write(req); err != nil {
		return 0, nil, false, err
	}
	line, err := c.br.ReadSlice('\n')
	if err != nil {
		return 0, nil, len(line) > 0, err
	}
	status, closing, err := parseStatusLine(line)
	if err != nil {
		return 0, nil, true, err
	}
	length, chunked, closes, err := c.readHeader()
	if err != nil {
		return 0, nil, true, err
	}
	closing = closing || closes
	c.body = c.body[:0]
	switch {
	case status < 200:
		// Only an Expect or an upgrade asks for one, and we send neither.
		return 0, nil, true, fmt.Errorf("unexpected informational answer HTTP %d", status)
	case status == http.StatusNoContent || status == http.StatusNotModified:
	case chunked:
		err = c.readChunked()
	case length >= 0:
		if length > maxBody {
			return 0, nil, true, fmt.Errorf("answer of %d bytes, more than the %d read at most", length, maxBody)
		}
		c.body = slices.Grow(c.body, length)[:length]
		_, err = io.ReadFull(c.br, c.body)
	default: // the body runs to the end of the connection
		closing = true
		c.body, err = readToEOF(c.br)
	}
	if err != nil {
		return 0, nil, true, fmt.Errorf("reading the answer: %w", err)
	}
	c.used = true
	if closing {
		c.close()
	}
	return status, c.body, true, nil
}

// parseStatusLine reads "HTTP/1.1 201 Created\r\n"; closing is set for an
// HTTP/1.0 answer, whose connection is not kept unless it says so.
func parseStatusLine(line []byte) (status int, closing bool, err error) {
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.")) || line[8] != ' ' || (len(line) > 12 && line[12] != ' ' && line[12] != '\r') {
		return 0, false, fmt.Errorf("malformed status line %.100q", line)
	}
	for _, d := range line[9:12] {
		if d < '0' || d > '9' {
			return 0, false, fmt.Errorf("malformed status line %.100q", line)
		}
		status = status*10 + int(d-'0')
	}
	return status, line[7] == '0', nil
}

// readHeader reads the header lines up to the empty one. length is -1
// without a Content-Length.
func (c *conn) readHeader() (length int, chunked, closing bool, err error) {
	length = -1
	for {
		line, err := c.readLine()
		if err != nil {
			return 0, false, false, err
		}
		if len(line) == 0 {
			return length, chunked, closing, nil
		}
		name, value, ok := bytes.Cut(line, []byte(":"))
		if !ok {
			return 0, false, false, fmt.Errorf("malformed header line %.100q", line)
		}
		value = bytes.TrimSpace(value)
		switch {
		case equalFold(name, "Content-Length"):
			n, ok := parseDecimal(value)
			if !ok || (length >= 0 && n != length) {
				return 0, false, false, fmt.Errorf("bad Content-Length %.40q", value)
			}
			length = n
		case equalFold(name, "Transfer-Encoding"):
			if !equalFold(value, "chunked") {
				return 0, false, false, fmt.Errorf("unsupported Transfer-Encoding %.40q", value)
			}
			chunked = true
		case equalFold(name, "Connection"):
			for opt := range bytes.SplitSeq(value, []byte(",")) {
				if equalFold(bytes.TrimSpace(opt), "close") {
					closing = true
				}
			}
		}
	}
}

// readChunked reads a chunked body (RFC 9112 section 7.1) into c.body,
// skipping chunk extensions and trailers.
func (c *conn) readChunked() error {
	for {
		line, err := c.readLine()
		if err != nil {
			return err
		}
		sizeField, _, _ := bytes.Cut(line, []byte(";"))
		size, err := strconv.ParseUint(string(bytes.TrimSpace(sizeField)), 16, 31)
		if err != nil {
			return fmt.Errorf("bad chunk size line %.40q", line)
		}
		if size == 0 {
			for {
				if line, err = c.readLine(); err != nil || len(line) == 0 {
					return err
				}
			}
		}
		n := len(c.body)
		if n+int(size) > maxBody {
			return fmt.Errorf("chunked answer of more than the %d bytes read at most", maxBody)
		}
		c.body = slices.Grow(c.body, int(size))[:n+int(size)]
		if _, err := io.ReadFull(c.br, c.body[n:]); err != nil {
			return err
		}
		if line, err = c.readLine(); err != nil {
			return err
		}
		if len(line) != 0 {
			return errors.New("chunk not followed by CRLF")
		}
	}
}

// readLine returns one line without its line ending, valid until the next
// read.
func (c *conn) readLine() ([]byte, error) {
	line, err := c.br.ReadSlice('\n')
	if errors.Is(err, bufio.ErrBufferFull) {
		return nil, fmt.Errorf("answer line longer than %d bytes", c.br.Size())
	}
	if err != nil {
		return nil, err
	}
	line = line[:len(line)-1]
	if n := len(line); n > 0 && line[n-1] == '\r' {
		line = line[:n-1]
	}
	return line, nil
}

func readToEOF(r io.Reader) ([]byte, error) {
	b, err := io.ReadAll(io.LimitReader(r, maxBody+1))
	if err == nil && len(b) > maxBody {
		err = fmt.Errorf("answer of more than the %d bytes read at most", maxBody)
	}
	return b, err
}

// equalFold is case-insensitive equality of a header's bytes and a name;
// the conversion of a short header to a string stays on the stack.
func equalFold(b []byte, s string) bool { return strings.EqualFold(string(b), s) }

func parseDecimal(b []byte) (int, bool) {
	if len(b) == 0 || len(b) > 10 {
		return 0, false
	}
	n := 0
	for _, d := range b {
		if d < '0' || d > '9' {
			return 0, false
		}
		n = n*10 + int(d-'0')
	}
	return n, true
}

// statusError is an answer with another status than the one wanted.
type statusError struct {
	method string
	status int
	body   string
}

// newStatusError keeps the server's message: the "error" field of its
// JSON answer, or the body as it is.
func newStatusError(method string, status int, body []byte) *statusError {
	msg := strings.TrimSpace(string(body))
	var e struct{ Error string }
	if json.Unmarshal(body, &e) == nil && e.Error != "" {
		msg = e.Error
	}
	return &statusError{method, status, msg}
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.method, e.status, e.body)
}
