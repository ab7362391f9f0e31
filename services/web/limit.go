package web

import (
	"errors"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"

	"github.com/annuaire/annuaire/registry"
)

// Defaults for the connection caps. Consul's http_max_conns_per_client is
// 200; the total is what one process serves comfortably, and what
// `annuaire serve` lowers to fit its file-descriptor limit.
const (
	DefaultMaxConns          = 4096
	DefaultMaxConnsPerClient = 200
	// DefaultStreamWriteTimeout is how long a write to an event stream may
	// wait for its reader.
	DefaultStreamWriteTimeout = 10 * time.Second
)

// A slots counts what is open at once, in total and per client address,
// and refuses more than its caps.
type slots struct {
	max, perClient int

	mu     sync.Mutex
	total  int                // guarded by mu
	byAddr map[netip.Addr]int // guarded by mu
}

func newSlots(max, perClient int) *slots {
	return &slots{max: max, perClient: perClient, byAddr: map[netip.Addr]int{}}
}

// refusal says why a slot was refused: the cap that is full.
type refusal int

const (
	granted refusal = iota
	fullTotal
	fullClient
)

// take takes a slot for addr, or says which cap is full.
func (s *slots) take(addr netip.Addr) refusal {
	s.mu.Lock()
	defer s.mu.Unlock()
	switch {
	case s.byAddr[addr] >= s.perClient:
		return fullClient
	case s.total >= s.max:
		return fullTotal
	}
	s.total++
	s.byAddr[addr]++
	return granted
}

func (s *slots) release(addr netip.Addr) {
	s.mu.Lock()
	defer s.mu.Unlock()
	s.total--
	if n := s.byAddr[addr] - 1; n > 0 {
		s.byAddr[addr] = n
	} else {
		delete(s.byAddr, addr)
	}
}

// open returns how many slots are taken.
func (s *slots) open() int {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.total
}

// limitListener accepts at most the slots' connections at once. One
// beyond a cap is answered at once, without reading its request, with
// 429 (its address has too many) or 503 (the server has too many) and
// closed, as Consul's connlimit does: it costs a descriptor for as long as
// a write to an empty socket buffer takes, never a goroutine.
type limitListener struct {
	net.Listener
	slots   *slots
	refused func(refusal) // counts a refusal; may be nil
	linger  chan struct{} // a slot per refused connection lingering
}

func (l *limitListener) Accept() (net.Conn, error) {
	for {
		c, err := l.Listener.Accept()
		if err != nil {
			return nil, err
		}
		addr, _ := remoteAddr(c.RemoteAddr().String())
		why := l.slots.take(addr)
		if why == granted {
			return &limitedConn{Conn: c, slots: l.slots, addr: addr}, nil
		}
		if l.refused != nil {
			l.refused(why)
		}
		l.refuse(c, why)
	}
}

// Descriptors is the most file descriptors a Server whose MaxConns is
// maxConns holds at once: one per connection, the refused connections it
// lets linger, and up to two sockets per DNS lookup, its lookup box's and
// the page's chains'. A process that shares out its descriptor limit
// gives the web server this many.
func Descriptors(maxConns int) int {
	return maxConns + lingerSlots(maxConns) + 2*(lookupSlots(maxConns)+lookupParallel)
}

// lingerSlots bounds the refused connections whose close waits for their
// request: past it they are closed at once.
func lingerSlots(maxConns int) int { return min(64, maxConns/8+1) }

// lookupSlots bounds the lookups (the lookup box, /api/lookup) that run
// at once; the next ones wait.
func lookupSlots(maxConns int) int { return min(16, maxConns/16+1) }

// refuse writes a whole HTTP answer to a connection beyond a cap and
// closes it.
func (l *limitListener) refuse(c net.Conn, why refusal) {
	status, text := "503 Service Unavailable", "the server has too many connections open"
	if why == fullClient {
		status, text = "429 Too Many Requests", "your address has too many connections open"
	}
	body := `{"error":"` + text + `; retry later"}` + "\n"
	c.SetDeadline(time.Now().Add(100 * time.Millisecond))
	c.Write([]byte("HTTP/1.1 " + status + "\r\nContent-Type: application/json; charset=utf-8\r\n" +
		"Retry-After: 1\r\nConnection: close\r\nContent-Length: " + strconv.Itoa(len(body)) + "\r\n\r\n" + body))
	// Closing a socket with unread data sends a reset, which can make the
	// client discard the answer before reading it (RFC 1122 section
	// 4.2.2.13): read the request for a moment first, as net/http does
	// with the connections it closes early.
	tc, ok := tcpConn(c)
	if ok {
		select {
		case l.linger <- struct{}{}:
		default:
			ok = false
		}
	}
	if !ok {
		c.Close()
		return
	}
	tc.CloseWrite()
	go func() {
		defer func() { <-l.linger }()
		io.Copy(io.Discard, c) // until the client closes or the deadline
		c.Close()
	}()
}

// limitedConn gives its slot back when it is closed.
type limitedConn struct {
	net.Conn
	slots *slots
	addr  netip.Addr
	once  sync.Once
}

// Write resets the connection when a write times out: a peer that took
// nothing for a whole write deadline (a stream's reader that stopped
// reading) is gone or too slow, and a close would leave what it did not
// take, and the FIN behind it, in the kernel until it reads or the
// orphaned socket times out (minutes: tcp_orphan_retries). net/http
// closes a connection whose write failed at once.
func (c *limitedConn) Write(b []byte) (int, error) {
	n, err := c.Conn.Write(b)
	if errors.Is(err, os.ErrDeadlineExceeded) {
		if tc, ok := c.Conn.(*net.TCPConn); ok {
			tc.SetLinger(0)
		}
	}
	return n, err
}

func (c *limitedConn) Close() error {
	err := c.Conn.Close()
	c.once.Do(func() { c.slots.release(c.addr) })
	return err
}

// tcpConn returns the *net.TCPConn under c, if there is one.
func tcpConn(c net.Conn) (*net.TCPConn, bool) {
	if lc, ok := c.(*limitedConn); ok {
		c = lc.Conn
	}
	tc, ok := c.(*net.TCPConn)
	return tc, ok
}

// checkHost refuses, while the server listens on loopback, a request
// whose Host is not one of its names (AllowedHosts).
func (s *Server) checkHost(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if s.loopback.Load() && !s.knownHost(r.Host) {
			// RFC 9110 section 15.5.20: not a name this server answers for.
			writeError(w, http.StatusMisdirectedRequest, "Host "+quote(r.Host)+" is not a name of this server: on loopback it answers to localhost, IP addresses, the names of its zone and --web-allow-host (against DNS rebinding)")
			return
		}
		next.ServeHTTP(w, r)
	})
}

// knownHost reports whether a Host header names this server: an IP
// address (which no rebinding can produce), localhost or a name under it
// (RFC 6761 section 6.3), a name of the zone, or one of AllowedHosts.
// An empty Host, from an HTTP/1.0 client, names nothing else either.
func (s *Server) knownHost(hostport string) bool {
	host := hostport
	if h, _, err := net.SplitHostPort(hostport); err == nil {
		host = h
	}
	host = strings.TrimSuffix(strings.TrimSuffix(strings.TrimPrefix(host, "["), "]"), ".")
	if host == "" {
		return true
	}
	if _, err := netip.ParseAddr(host); err == nil {
		return true
	}
	host = registry.FoldName(host)
	zone := strings.TrimSuffix(s.zone(), ".")
	if host == "localhost" || strings.HasSuffix(host, ".localhost") || host == zone || strings.HasSuffix(host, "."+zone) {
		return true
	}
	for _, a := range s.AllowedHosts {
		if registry.SameName(host, strings.TrimSuffix(a, ".")) {
			return true
		}
	}
	return false
}
