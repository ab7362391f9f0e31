package authority

import (
	"context"
	"log/slog"
	"net"
	"net/netip"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/internal/testenv"
)

// TestTCPTrickle is issue 18's attack, scaled down: clients hold every
// TCP slot, each connection asking one question every 1.5 s (the attack
// asked every 5 s of a 10 s idle timeout; here 3 s), from three addresses,
// and open a new connection for each one closed. A new dig +tcp, from
// another address and from one of theirs, still gets its answer: a new
// connection closes the idlest rather than wait for a slot (was: dig
// failed for as long as the attack lasted).
func TestTCPTrickle(t *testing.T) {
	dig := testenv.NeedTool(t, "dig")
	const maxConns, perClient = 40, 16
	m := NewMetrics()
	addr := authtest.Start(t, &Server{Registry: authtest.Registry(t), Zone: authtest.Zone, Metrics: m,
		MaxTCPConns: maxConns, MaxTCPConnsPerClient: perClient, IdleTimeout: 3 * time.Second})
	host, port, _ := net.SplitHostPort(addr)

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	var wg sync.WaitGroup
	defer func() { cancel(); wg.Wait() }()
	var answered atomic.Int64
	sources := []string{"127.0.0.2", "127.0.0.3", "127.0.0.4"}
	for _, src := range sources {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: time.Second}
		if c, err := d.Dial("tcp", addr); err != nil {
			t.Skipf("cannot connect from %s (loopback beyond 127.0.0.1 needs Linux): %v", src, err)
		} else {
			c.Close()
		}
		for range perClient {
			wg.Add(1)
			go func() {
				defer wg.Done()
				trickle(ctx, d, addr, &answered)
			}()
		}
	}
	// Let them fill every slot and settle.
	deadline := time.Now().Add(10 * time.Second)
	for answered.Load() < int64(len(sources)*perClient) && time.Now().Before(deadline) {
		time.Sleep(50 * time.Millisecond)
	}
	if answered.Load() < int64(maxConns) {
		t.Fatalf("the attack got only %d answers: it does not hold the slots", answered.Load())
	}

	for i, src := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.1"} {
		start := time.Now()
		out, err := exec.Command(dig, "+tcp", "+tries=1", "+time=2", "-b", src, "@"+host, "-p", port, "+short", "a.svc.internal.", "A").CombinedOutput()
		if err != nil || strings.TrimSpace(string(out)) != "127.0.0.1" {
			t.Errorf("dig +tcp -b %s (%d) while the slots are held: %v\n%s", src, i, err, out)
			continue
		}
		t.Logf("dig +tcp -b %s: answered in %v", src, time.Since(start).Round(time.Millisecond))
	}
	if closed := counted(t, m, "annuaire_dns_tcp_closed_total"); closed["idlest"]+closed["per-client"] == 0 {
		t.Errorf("no connection counted as closed to make room: %v", closed)
	}
}

// counted returns the values of the counter name in m, by their one
// label's value.
func counted(t *testing.T, m *Metrics, name string) map[string]float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(m)
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	out := map[string]float64{}
	for _, mf := range mfs {
		if mf.GetName() != name {
			continue
		}
		for _, c := range mf.GetMetric() {
			label := ""
			for _, l := range c.GetLabel() {
				label += l.GetValue()
			}
			out[label] = c.GetCounter().GetValue()
		}
	}
	return out
}

// trickle holds a TCP connection and asks a question on it every 1.5 s,
// connecting again when the server closes it, until ctx ends.
func trickle(ctx context.Context, d *net.Dialer, addr string, answered *atomic.Int64) {
	q := new(dns.Msg)
	q.SetQuestion("a.svc.internal.", dns.TypeA)
	for ctx.Err() == nil {
		nc, err := d.DialContext(ctx, "tcp", addr)
		if err != nil {
			time.Sleep(100 * time.Millisecond)
			continue
		}
		c := &dns.Conn{Conn: nc}
		for ctx.Err() == nil {
			c.SetDeadline(time.Now().Add(3 * time.Second))
			if c.WriteMsg(q) != nil {
				break
			}
			if _, err := c.ReadMsg(); err != nil {
				break
			}
			answered.Add(1)
			select {
			case <-ctx.Done():
			case <-time.After(1500 * time.Millisecond):
			}
		}
		nc.Close()
	}
}

// TestAXFRSlowReader: a secondary that reads an AXFR slowly but steadily
// gets all of it, though each message takes longer than WriteTimeout to
// leave; one that stops reading is cut. (Was: a 2 s deadline per write cut
// a slow secondary's AXFR of a 28 MB zone after 12-14 s.) Socket buffers
// are made small on both sides so that the kernel cannot absorb the zone.
func TestAXFRSlowReader(t *testing.T) {
	reg := authtest.Big(t, 700) // about 60 KB of AXFR
	s := &Server{Registry: reg, Zone: authtest.Zone, WriteTimeout: 400 * time.Millisecond,
		AllowTransfer: []netip.Prefix{netip.MustParsePrefix("127.0.0.0/8")}, Logger: slog.New(slog.DiscardHandler)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, smallSendBuffers{ln}) }()
	defer func() { cancel(); <-done }()

	transfer := func(pauseAfter int, pause time.Duration) (records int, err error) {
		// A network's segment size and a small receive buffer, set
		// before connecting: on loopback (64 KB segments) the window
		// opens by halves of a large buffer, so a slow reader looks like
		// one that stops for long stretches.
		d := net.Dialer{Control: slowNetwork}
		nc, err := d.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		defer nc.Close()
		c := &dns.Conn{Conn: &slowReader{Conn: nc, pauseAfter: pauseAfter, pause: pause}}
		q := new(dns.Msg)
		q.SetAxfr(authtest.Zone)
		if err := c.WriteMsg(q); err != nil {
			t.Fatal(err)
		}
		soas := 0
		for soas < 2 {
			c.SetReadDeadline(time.Now().Add(20 * time.Second))
			m, err := c.ReadMsg()
			if err != nil {
				return records, err
			}
			for _, rr := range m.Answer {
				records++
				if rr.Header().Rrtype == dns.TypeSOA {
					soas++
				}
			}
		}
		return records, nil
	}
	start := time.Now()
	n, err := transfer(0, 0)
	if err != nil {
		t.Fatalf("slow AXFR cut after %d records, %v: %v", n, time.Since(start), err)
	}
	took := time.Since(start)
	t.Logf("slow AXFR: %d records in %v", n, took.Round(time.Millisecond))
	if took < time.Second {
		t.Fatalf("the AXFR took %v: the reader was not slow enough to prove anything", took)
	}
	// A reader that stops for three times WriteTimeout is cut: the
	// server does not wait for it forever.
	if n, err := transfer(16<<10, 1200*time.Millisecond); err == nil {
		t.Errorf("a reader that stopped got the whole zone (%d records)", n)
	}
}

// slowReader reads at most 1 KB every 25 ms, about 40 KB/s; after
// pauseAfter bytes (if not zero) it stops reading for pause, once.
type slowReader struct {
	net.Conn
	read, pauseAfter int
	pause            time.Duration
}

func (r *slowReader) Read(p []byte) (int, error) {
	if r.pauseAfter > 0 && r.read >= r.pauseAfter {
		time.Sleep(r.pause)
		r.pauseAfter = 0
	}
	time.Sleep(25 * time.Millisecond)
	n, err := r.Conn.Read(p[:min(len(p), 1024)])
	r.read += n
	return n, err
}

// smallSendBuffers gives accepted connections a 4 KB send buffer.
type smallSendBuffers struct{ net.Listener }

func (l smallSendBuffers) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if tc, ok := c.(*net.TCPConn); ok {
		tc.SetWriteBuffer(4096)
	}
	return c, err
}
