package resolver

import (
	"fmt"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
)

// listenEchoOn is listenEcho on a given address.
func listenEchoOn(t *testing.T, addr string) error {
	_, err := testenv.ServeTCPOn(t, addr, testenv.Echo)
	return err
}

// racePort returns a port where an echo listens on live and that is free
// on each of the blackholed addresses, which it then blackholes.
func racePort(t *testing.T, live string, blackholed ...string) int {
	t.Helper()
	for range 20 {
		port := deadPort(t)
		free := true
		for _, ip := range blackholed {
			ln, err := net.Listen("tcp", net.JoinHostPort(ip, fmt.Sprint(port)))
			if err != nil {
				free = false
				break
			}
			ln.Close()
		}
		if !free || listenEchoOn(t, net.JoinHostPort(live, fmt.Sprint(port))) != nil {
			continue
		}
		for _, ip := range blackholed {
			testenv.Blackhole(t, net.JoinHostPort(ip, fmt.Sprint(port)))
		}
		return port
	}
	t.Fatal("no port free on every address")
	return 0
}

// TestRaceBlackholed dials a host with three addresses, the first two
// dropping every SYN as a dead host does: attempts start 250 ms apart
// without waiting for the earlier ones to time out, and the live third
// wins, long before the dial timeout (RFC 8305 section 5).
func TestRaceBlackholed(t *testing.T) {
	port := racePort(t, "127.0.0.4", "127.0.0.2", "127.0.0.3")
	_, r := newTest(t, fmt.Sprintf(`$ORIGIN svc.internal.
$TTL 60
@ IN SOA ns hostmaster 1 3600 600 86400 30
box IN A 127.0.0.2
box IN A 127.0.0.3
box IN A 127.0.0.4
_echo._tcp IN SRV 0 0 %d box
`, port))
	r.DialTimeout = 10 * time.Second
	start := time.Now()
	conn, c, err := r.DialTrace(t.Context(), "tcp", "echo")
	if err != nil {
		t.Fatalf("%v\n%s", err, c.Text())
	}
	took := time.Since(start)
	t.Logf("took %v\n%s", took, c.Text())
	if got := conn.RemoteAddr().String(); got != fmt.Sprintf("127.0.0.4:%d", port) {
		t.Errorf("connected to %s", got)
	}
	roundTrip(t, conn)
	if took > 5*time.Second {
		t.Errorf("took %v: attempts waited for the blackholed ones", took)
	}
	steps := connects(c)
	if len(steps) != 3 {
		t.Fatalf("%d attempts, want 3", len(steps))
	}
	for i, s := range steps {
		if want := fmt.Sprintf("127.0.0.%d:%d", i+2, port); s.Question != want {
			t.Errorf("attempt %d to %s, want %s", i, s.Question, want)
		}
		if i > 0 {
			if gap := s.StartUS - steps[i-1].StartUS; gap < us(240*time.Millisecond) || gap > us(2*time.Second) {
				t.Errorf("attempt %d began %v after the one before, want about 250ms", i, time.Duration(gap)*time.Microsecond)
			}
		}
		if i < 2 && !strings.Contains(s.Error, "cancelled") {
			t.Errorf("blackholed %s: %q, want cancelled once the third connected", s.Question, s.Error)
		}
	}
}

// TestRaceIPv6Blackholed: IPv6 is tried first and hangs; IPv4 races it
// 250 ms later and wins.
func TestRaceIPv6Blackholed(t *testing.T) {
	if ln, err := net.Listen("tcp6", "[::1]:0"); err != nil {
		t.Skipf("no IPv6 loopback: %v", err)
	} else {
		ln.Close()
	}
	port := racePort(t, "127.0.0.1", "::1")
	_, r := newTest(t, fmt.Sprintf(`$ORIGIN svc.internal.
$TTL 60
@ IN SOA ns hostmaster 1 3600 600 86400 30
box IN AAAA ::1
box IN A 127.0.0.1
_echo._tcp IN SRV 0 0 %d box
`, port))
	r.DialTimeout = 10 * time.Second
	conn, c, err := r.DialTrace(t.Context(), "tcp", "echo")
	if err != nil {
		t.Fatalf("%v\n%s", err, c.Text())
	}
	t.Logf("\n%s", c.Text())
	roundTrip(t, conn)
	steps := connects(c)
	if len(steps) != 2 || steps[0].Question != fmt.Sprintf("[::1]:%d", port) || steps[1].Question != fmt.Sprintf("127.0.0.1:%d", port) {
		t.Fatalf("attempts %+v, want [::1] then 127.0.0.1", steps)
	}
	if gap := steps[1].StartUS - steps[0].StartUS; gap < us(240*time.Millisecond) || gap > us(2*time.Second) {
		t.Errorf("IPv4 began %v after IPv6, want about 250ms", time.Duration(gap)*time.Microsecond)
	}
}
