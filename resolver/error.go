package resolver

import (
	"errors"
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

	// ErrNotAvailable: the zone says the service is decidedly not
	// available there, with an SRV target of "." (RFC 2782) or a null MX
	// (RFC 7505).
	ErrNotAvailable = errors.New("service decidedly not available")
)

// A LookupError reports a chain that failed, as net.DNSError does for a
// host lookup: which name, at which step, asking which server, and why.
type LookupError struct {
	Name   string // the name as the caller gave it
	Step   string // the step that failed: "normalize", "srv", "mx", "address", "connect"
	Server string // the DNS server asked at that step, if any
	Err    error  // the cause; wraps one of the Err* sentinels or a dial error

	// Chain holds every step tried before the failure; its Text shows them.
	Chain *Chain
}

// Error names the steps tried and what each found, e.g.
//
//	telnet: _telnet._tcp.svc.internal. SRV: NXDOMAIN; telnet.svc.internal. A: NXDOMAIN; well-known port 23/tcp, but no host is registered
func (e *LookupError) Error() string {
	var b strings.Builder
	b.WriteString(e.Name)
	b.WriteString(": ")
	if e.Chain != nil {
		for _, s := range e.Chain.Steps {
			if s.Question == "" || s.Step == "normalize" || s.Step == "well-known" || s.Step == "connect" ||
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
