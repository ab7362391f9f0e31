package resolver

import (
	"errors"
	"fmt"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/miekg/dns"
)

// startLiar serves handle on 127.0.0.1, over UDP and TCP on one port: a
// DNS server scripted to lie, as a compromised or broken server would.
func startLiar(t *testing.T, handle func(w dns.ResponseWriter, req *dns.Msg)) string {
	t.Helper()
	pc, ln := listenBoth(t)
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: dns.HandlerFunc(handle)}, {Listener: ln, Handler: dns.HandlerFunc(handle)}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}

// reply is a response to req with these answer and additional records,
// given in zone-file form with absolute names.
func reply(t *testing.T, req *dns.Msg, answer []string, extra ...string) *dns.Msg {
	m := new(dns.Msg)
	m.SetReply(req)
	m.Authoritative = true
	for _, s := range answer {
		m.Answer = append(m.Answer, mustRR(t, s))
	}
	for _, s := range extra {
		m.Extra = append(m.Extra, mustRR(t, s))
	}
	if len(m.Answer) == 0 {
		m.Ns = []dns.RR{mustRR(t, "svc.internal. 60 IN SOA ns.svc.internal. hostmaster.svc.internal. 1 3600 600 86400 30")}
	}
	return m
}

func mustRR(t *testing.T, s string) dns.RR {
	rr, err := dns.NewRR(s)
	if err != nil {
		t.Fatalf("%s: %v", s, err)
	}
	return rr
}

func question(req *dns.Msg) string {
	return strings.ToLower(req.Question[0].Name) + " " + dns.TypeToString[req.Question[0].Qtype]
}

// TestLiarOutOfZoneGlue: an SRV answer names a target outside the zone and
// adds an address for it in the additional section. The client must not
// connect there on the server's word (RFC 2181 section 5.4.1): it asks
// for the target itself, and uses what that answer says, or fails.
func TestLiarOutOfZoneGlue(t *testing.T) {
	_, port := listenEcho(t)
	var refuse atomic.Bool
	addr := startLiar(t, func(w dns.ResponseWriter, req *dns.Msg) {
		switch question(req) {
		case "_oob._tcp.svc.internal. SRV":
			w.WriteMsg(reply(t, req, []string{fmt.Sprintf("_oob._tcp.svc.internal. 60 IN SRV 0 0 %d victim.example.", port)},
				"victim.example. 60 IN A 127.66.66.66", "victim.example. 60 IN AAAA 2001:db8::66"))
		case "victim.example. A":
			if refuse.Load() {
				m := new(dns.Msg)
				w.WriteMsg(m.SetRcode(req, dns.RcodeRefused))
				return
			}
			w.WriteMsg(reply(t, req, []string{"victim.example. 60 IN A 127.0.0.1"}))
		default:
			w.WriteMsg(reply(t, req, nil))
		}
	})
	r := &Resolver{Server: addr, Timeout: time.Second}
	c, err := r.Lookup(t.Context(), "oob")
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("\n%s", c.Text())
	want := fmt.Sprintf("127.0.0.1:%d", port)
	if len(c.Candidates) != 1 || c.Candidates[0].HostPort() != want {
		t.Errorf("candidates %+v, want only %s, from asking for victim.example.", c.Candidates, want)
	}
	var asked, setAside bool
	for _, s := range c.Steps {
		asked = asked || s.Step == "address" && s.Question == "victim.example. A" && s.Server == addr && s.Skipped == ""
		setAside = setAside || s.Step == "skip" && strings.Contains(s.Question, "127.66.66.66")
	}
	if !asked || !setAside {
		t.Errorf("want a query for victim.example. A and the glue set aside in the chain")
	}

	conn, c, err := r.DialTrace(t.Context(), "tcp", "oob")
	if err != nil {
		t.Fatalf("%v\n%s", err, c.Text())
	}
	conn.Close()
	if conn.RemoteAddr().String() != want {
		t.Errorf("dialled %v, want %s", conn.RemoteAddr(), want)
	}

	// Asked for the target, the server refuses: the lookup fails and
	// names it; nothing is dialled.
	refuse.Store(true)
	r = &Resolver{Server: addr, Timeout: time.Second}
	conn, c, err = r.DialTrace(t.Context(), "tcp", "oob")
	if err == nil {
		conn.Close()
		t.Fatalf("connected to %v", conn.RemoteAddr())
	}
	if !errors.Is(err, ErrServerUnreachable) || !strings.Contains(err.Error(), addr+" answered REFUSED") || strings.Contains(c.Text(), "connect ") {
		t.Errorf("error %v\n%s", err, c.Text())
	}
}

// TestLiarAnotherName: the answer section holds records of a name the
// question does not lead to. They are not used: the server's turn is lost
// and, with no other server, the lookup fails naming it.
func TestLiarAnotherName(t *testing.T) {
	_, port := listenEcho(t)
	srv := fmt.Sprintf("SRV 0 0 %d box.svc.internal.", port)
	liar := startLiar(t, func(w dns.ResponseWriter, req *dns.Msg) {
		switch question(req) {
		case "_own._tcp.svc.internal. SRV":
			w.WriteMsg(reply(t, req, []string{"_other._tcp.svc.internal. 60 IN " + srv}, "box.svc.internal. 60 IN A 127.0.0.1"))
		case "_alias._tcp.svc.internal. SRV": // a CNAME chain leads there: fine
			w.WriteMsg(reply(t, req, []string{"_alias._tcp.svc.internal. 60 IN CNAME _real._tcp.svc.internal.",
				"_real._tcp.svc.internal. 60 IN " + srv}, "box.svc.internal. 60 IN A 127.0.0.1"))
		default:
			w.WriteMsg(reply(t, req, nil))
		}
	})
	r := &Resolver{Server: liar, Timeout: time.Second}
	c, err := r.Lookup(t.Context(), "own")
	var le *LookupError
	if !errors.As(err, &le) || !errors.Is(err, ErrBadAnswer) || le.IsNotFound() || le.Server != liar ||
		!strings.Contains(err.Error(), "bad answer from "+liar+": records of another name (_other._tcp.svc.internal. SRV)") {
		t.Errorf("error %v, want a bad answer from %s", err, liar)
	}
	t.Logf("\n%s", c.Text())

	c, err = r.Lookup(t.Context(), "alias")
	if err != nil || len(c.Candidates) != 1 || c.Candidates[0].Port != uint16(port) {
		t.Errorf("through a CNAME: %v %+v", err, c.Candidates)
	}

	// With a second server, the liar only costs its turn.
	good, _ := newTest(t, fmt.Sprintf(testZone+"_own._tcp IN SRV 0 0 %d box\n", port, port, port))
	r = &Resolver{Timeout: time.Second}
	r.init()
	r.servers = []string{liar, good.Addr}
	c, err = r.Lookup(t.Context(), "own")
	if err != nil || c.Steps[1].Server != good.Addr {
		t.Errorf("liar then good server: %v\n%s", err, c.Text())
	}
}

// TestLiarWrongID: over UDP a datagram with another ID or question is
// not the answer: it is ignored and the wait goes on (RFC 5452 section
// 9.1), so a forger has to guess the ID; if the answer never comes the
// error says what was ignored. Over TCP the first message is the answer,
// or the server is wrong, at once.
func TestLiarWrongID(t *testing.T) {
	const box = "box.svc.internal. 60 IN A 127.0.0.1"
	addr := startLiar(t, func(w dns.ResponseWriter, req *dns.Msg) {
		_, udp := w.RemoteAddr().(*net.UDPAddr)
		good := reply(t, req, []string{"_echo._tcp.svc.internal. 60 IN SRV 0 0 7 box.svc.internal."}, box)
		good.Question[0].Name = strings.Replace(good.Question[0].Name, strings.SplitN(good.Question[0].Name, ".", 2)[0], "_echo", 1)
		bad := good.Copy()
		switch question(req) {
		case "_wrongid._tcp.svc.internal. SRV":
			bad.Id++
			w.WriteMsg(bad)
		case "_wrongq._tcp.svc.internal. SRV":
			w.WriteMsg(bad) // the question of _echo._tcp
		case "_idthenright._tcp.svc.internal. SRV":
			bad.Id++
			w.WriteMsg(bad)
			w.WriteMsg(reply(t, req, []string{"_idthenright._tcp.svc.internal. 60 IN SRV 0 0 7 box.svc.internal."}, box))
		case "_tcpwrongid._tcp.svc.internal. SRV":
			if udp {
				tc := reply(t, req, nil)
				tc.Truncated, tc.Ns = true, nil
				w.WriteMsg(tc)
				return
			}
			bad.Id++
			w.WriteMsg(bad)
		default:
			w.WriteMsg(reply(t, req, nil))
		}
	})
	r := &Resolver{Server: addr, Timeout: 300 * time.Millisecond}
	for _, tt := range []struct {
		name, want string
	}{
		{"wrongid", "bad answer from " + addr + ": ignored an answer with ID"},
		{"wrongq", "bad answer from " + addr + ": ignored an answer to another question (_echo._tcp.svc.internal. SRV), then no answer within 300ms"},
		{"tcpwrongid", "bad answer from " + addr + " over TCP: an answer with ID"},
	} {
		t.Run(tt.name, func(t *testing.T) {
			_, err := r.Lookup(t.Context(), tt.name)
			var ne net.Error
			if !errors.Is(err, ErrBadAnswer) || !strings.Contains(err.Error(), tt.want) || !errors.As(err, &ne) {
				t.Errorf("error %v\nwant it to say %q", err, tt.want)
			}
			if tt.name != "tcpwrongid" && !ne.Timeout() {
				t.Errorf("Timeout() false for %v", err)
			}
		})
	}
	r = &Resolver{Server: addr, Timeout: 5 * time.Second}
	start := time.Now()
	if _, err := r.Lookup(t.Context(), "tcpwrongid"); !errors.Is(err, ErrBadAnswer) || time.Since(start) > 2500*time.Millisecond {
		t.Errorf("over TCP a wrong ID must fail at once, not after the timeout: %v after %v", err, time.Since(start))
	}
	if c, err := r.Lookup(t.Context(), "idthenright"); err != nil || len(c.Candidates) != 1 {
		t.Errorf("a wrong ID then the answer: %v", err)
	}
}

// TestLiarDropsAAAA: a server that never answers AAAA questions costs a
// dial the Resolution Delay (50 ms, RFC 8305 section 3), not the 2 s
// timeout: connecting starts on the A answer.
func TestLiarDropsAAAA(t *testing.T) {
	_, port := listenEcho(t)
	for _, glue := range []bool{false, true} {
		t.Run(fmt.Sprintf("glue=%v", glue), func(t *testing.T) {
			addr := startLiar(t, func(w dns.ResponseWriter, req *dns.Msg) {
				switch q := question(req); {
				case req.Question[0].Qtype == dns.TypeAAAA:
					// dropped
				case q == "_echo._tcp.svc.internal. SRV":
					var extra []string
					if glue {
						extra = append(extra, "box.svc.internal. 60 IN A 127.0.0.1")
					}
					w.WriteMsg(reply(t, req, []string{fmt.Sprintf("_echo._tcp.svc.internal. 60 IN SRV 0 0 %d box.svc.internal.", port)}, extra...))
				case q == "box.svc.internal. A":
					w.WriteMsg(reply(t, req, []string{"box.svc.internal. 60 IN A 127.0.0.1"}))
				default:
					w.WriteMsg(reply(t, req, nil))
				}
			})
			r := &Resolver{Server: addr} // the default 2 s timeout
			start := time.Now()
			conn, c, err := r.DialTrace(t.Context(), "tcp", "echo")
			took := time.Since(start)
			if err != nil {
				t.Fatalf("%v\n%s", err, c.Text())
			}
			roundTrip(t, conn)
			t.Logf("connected after %v\n%s", took, c.Text())
			if took > time.Second {
				t.Errorf("connected after %v: the dropped AAAA was waited for", took)
			}
			var a, connect, aaaa *Step
			for i := range c.Steps {
				switch s := &c.Steps[i]; {
				case s.Question == "box.svc.internal. A":
					a = s
				case s.Question == "box.svc.internal. AAAA":
					aaaa = s
				case s.Step == "connect":
					connect = s
				}
			}
			if a == nil || connect == nil || aaaa == nil || !strings.Contains(aaaa.Skipped, "not waited for") {
				t.Fatalf("want the A, the abandoned AAAA and the connect in the chain")
			}
			// Timers never fire early: the attempt began at least the
			// Resolution Delay after A was known (give or take the clock
			// readings around it).
			if gap := time.Duration(connect.StartUS-a.StartUS-a.DurationUS) * time.Microsecond; gap < ResolutionDelay-5*time.Millisecond {
				t.Errorf("connecting started %v after A answered, want the %v Resolution Delay", gap, ResolutionDelay)
			}
		})
	}
}
