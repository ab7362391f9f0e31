package resolver

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"strings"
)

// The sentinel errors a lookup or dial wraps, to be checked with errors.Is.
var (
	// ErrNoSuchService: nothing answers to the name — no SRV record, no
	// host of that name, and no port to use with one.
	ErrNoSuchService = errors.New("no such service")

	// ErrNoHost: a port is known (from SRV, MX or the catalog) but no
	// host with an address is registered for it.
	ErrNoHost = errors.New("no host is registered")

	// ErrServerUnreachable: the DNS server did not answer, or answered
	// SERVFAIL or REFUSED, so nothing can be said about the name.
	ErrServerUnreachable = errors.New("DNS server unreachable")

	// ErrBadAnswer: a server answered something other than the question
	// asked — another ID or question (RFC 5452 section 9.1), or records
	// of a name the question does not lead to (RFC 2181 section 5.4.1).
	// The answer was not used; nothing can be said about the name.
	ErrBadAnswer = errors.New("bad answer")

	// ErrNotAvailable: the zone says the service is decidedly not
	// available there, with an SRV target of "." (RFC 2782) or a null MX
	// (RFC 7505).
	ErrNotAvailable = errors.New("service decidedly not available")
)

// A LookupError reports a chain that failed, as net.DNSError does for a
// host lookup: which name, at which step, asking which server, and why.
// It is a net.Error, so code written for net's errors works unchanged:
//
//	var ne net.Error
//	if errors.As(err, &ne) && ne.Timeout() { … }
type LookupError struct {
	Name   string // the name as the caller gave it
	Step   string // the step that failed: "normalize", "srv", "mx", "address", "connect"
	Server string // the DNS server asked at that step, if any
	Err    error  // the cause; wraps one of the Err* sentinels or a dial error

	// Chain holds every step tried before the failure; its Text shows them.
	Chain *Chain
}

var _ net.Error = (*LookupError)(nil)

// Error names the steps tried and what each found, e.g.
//
//	telnet: _telnet._tcp.svc.internal. SRV: NXDOMAIN; telnet.svc.internal. A: NXDOMAIN; well-known port 23/tcp, but no host is registered
func (e *LookupError) Error() string {
	var b strings.Builder
	b.WriteString(e.Name)
	b.WriteString(": ")
	if e.Chain != nil {
		for _, s := range e.Chain.Steps {
			if s.Question == "" || s.Step == "normalize" || s.Step == "well-known" || s.Step == "connect" || s.Step == "skip" ||
				e.Err != nil && s.Error == e.Err.Error() { // said once, at the end
				continue
			}
			b.WriteString(s.Question)
			b.WriteString(": ")
			b.WriteString(s.outcome())
			b.WriteString("; ")
		}
	}
	if e.Err != nil {
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

func (e *LookupError) Unwrap() error { return e.Err }

// IsNotFound reports whether the name has no service or no host, as
// opposed to a server that could not be asked.
func (e *LookupError) IsNotFound() bool {
	return errors.Is(e.Err, ErrNoSuchService) || errors.Is(e.Err, ErrNoHost)
}

// Timeout reports whether the chain failed because something did not
// answer in time: a DNS server, a connection attempt or the caller's
// deadline.
func (e *LookupError) Timeout() bool {
	if errors.Is(e.Err, os.ErrDeadlineExceeded) || errors.Is(e.Err, context.DeadlineExceeded) {
		return true
	}
	var ne net.Error
	return errors.As(e.Err, &ne) && ne.Timeout()
}

// Temporary reports whether trying again later may succeed: a timeout,
// or DNS servers that could not be asked, as net.DNSError says of
// SERVFAIL. A name that does not exist is not temporary.
func (e *LookupError) Temporary() bool {
	return e.Timeout() || errors.Is(e.Err, ErrServerUnreachable)
}

// joinErrors says several errors on one line, "a; b; c", each still
// reachable by errors.Is and errors.As (errors.Join would put them on
// several lines).
func joinErrors(errs []error) error {
	switch len(errs) {
	case 0:
		return nil
	case 1:
		return errs[0]
	}
	args := make([]any, len(errs))
	for i, e := range errs {
		args[i] = e
	}
	return fmt.Errorf(strings.TrimSuffix(strings.Repeat("%w; ", len(args)), "; "), args...)
}
