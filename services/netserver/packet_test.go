package netserver

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"testing"
	"time"
)

// echoReply answers a datagram with itself, as the echo service does.
func echoReply(req []byte) []byte { return req }

// servePackets serves s on a fresh loopback UDP socket until the test ends
// and returns the socket, which the test may also write from.
func servePackets(t *testing.T, s *PacketServer) *net.UDPConn {
	t.Helper()
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServePacket(ctx, pc) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("ServePacket: %v", err)
		}
	})
	return pc
}

// waitReceived waits until s has read n datagrams.
func waitReceived(t *testing.T, s *PacketServer, n int64) {
	t.Helper()
	for deadline := time.Now().Add(5 * time.Second); s.Stats().Received < n; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v, want %d received", s.Stats(), n)
		}
	}
}

func TestPacketReply(t *testing.T) {
	s := &PacketServer{Reply: echoReply}
	addr := servePackets(t, s).LocalAddr().String()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("un datagramme\n"))
	buf := make([]byte, 100)
	n, err := c.Read(buf)
	if err != nil || string(buf[:n]) != "un datagramme\n" {
		t.Fatalf("reply %q, %v", buf[:n], err)
	}
	for deadline := time.Now().Add(5 * time.Second); s.Stats().Replied != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v", s.Stats())
		}
	}
}

// TestPacketSelfAddressed is CVE-1999-0103 on one socket: a datagram whose
// source is the service's own address and port would make it answer
// itself forever. Writing from the server's own socket to itself sends
// exactly that datagram, no forged packet needed.
func TestPacketSelfAddressed(t *testing.T) {
	s := &PacketServer{Reply: echoReply}
	pc := servePackets(t, s)
	if _, err := pc.WriteTo([]byte("loop?"), pc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, s, 1)
	time.Sleep(100 * time.Millisecond) // a loop would show by now
	if st := s.Stats(); st != (PacketStats{Received: 1, Refused: 1}) {
		t.Errorf("stats %+v, want the one datagram received and refused", st)
	}
}

// TestPacketSiblingLoop: two services sharing a Guard (echo and daytime in
// one process) do not answer each other: a datagram sent from one's
// socket to the other, as a forged source would make it, gets no answer,
// where without the Guard each answer would start the next.
func TestPacketSiblingLoop(t *testing.T) {
	var g Guard
	a := &PacketServer{Reply: echoReply, Guard: &g}
	b := &PacketServer{Reply: func([]byte) []byte { return []byte("Thursday, December 4, 2025 17:53:07-UTC\r\n") }, Guard: &g}
	pa, pb := servePackets(t, a), servePackets(t, b)
	// Each loop adds its port to the Guard when it starts.
	for _, pc := range []*net.UDPConn{pa, pb} {
		src := pc.LocalAddr().(*net.UDPAddr).AddrPort()
		for deadline := time.Now().Add(5 * time.Second); g.refuse(src) == ""; time.Sleep(time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatal("the loops did not start")
			}
		}
	}
	if _, err := pb.WriteTo([]byte("from b's port"), pa.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	if _, err := pa.WriteTo([]byte("from a's port"), pb.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	waitReceived(t, a, 1)
	waitReceived(t, b, 1)
	time.Sleep(100 * time.Millisecond)
	for name, s := range map[string]*PacketServer{"a": a, "b": b} {
		if st := s.Stats(); st != (PacketStats{Received: 1, Refused: 1}) {
			t.Errorf("%s: stats %+v, want one datagram received and refused", name, st)
		}
	}
}

// TestPacketRate: one source flooding gets a burst of answers, then only
// what the rate refills.
func TestPacketRate(t *testing.T) {
	s := &PacketServer{Reply: echoReply, Guard: &Guard{Rate: 5}}
	addr := servePackets(t, s).LocalAddr().String()
	c, err := net.Dial("udp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	begin := time.Now()
	for range 50 {
		c.Write([]byte("x"))
	}
	waitReceived(t, s, 50)
	allowed := 10 + 5*time.Since(begin).Seconds() + 1
	if st := s.Stats(); st.Replied < 10 || float64(st.Replied) > allowed || st.Refused != 50-st.Replied {
		t.Errorf("stats %+v: want a burst of 10 answers and at most %.0f in all", st, allowed)
	}
}

func TestGuardRefuse(t *testing.T) {
	var g Guard
	g.addPort(7007)
	g.addPort(1313)
	for _, tc := range []struct {
		src  string
		want string
	}{
		{"127.0.0.1:54321", ""},
		{"[::1]:54321", ""},
		{"192.0.2.1:1024", ""},
		{"127.0.0.1:7", refusedWellKnown},  // echo
		{"127.0.0.1:9", refusedWellKnown},  // discard
		{"127.0.0.1:13", refusedWellKnown}, // daytime
		{"127.0.0.1:19", refusedWellKnown}, // chargen
		{"127.0.0.1:37", refusedWellKnown}, // time
		{"192.0.2.1:53", refusedWellKnown}, // DNS
		{"192.0.2.1:1023", refusedWellKnown},
		{"127.0.0.1:0", refusedWellKnown},
		{"127.0.0.1:7007", refusedSibling}, // itself
		{"192.0.2.1:7007", refusedSibling}, // another annuaire's echo
		{"[::ffff:127.0.0.1]:1313", refusedSibling},
		{"0.0.0.0:5000", refusedAddress},
		{"224.0.0.1:5000", refusedAddress},
		{"255.255.255.255:5000", refusedAddress},
		{"[ff02::1]:5000", refusedAddress},
	} {
		if got := g.refuse(netip.MustParseAddrPort(tc.src)); got != tc.want {
			t.Errorf("refuse(%s) = %q, want %q", tc.src, got, tc.want)
		}
	}
	g.removePort(7007)
	if got := g.refuse(netip.MustParseAddrPort("127.0.0.1:7007")); got != "" {
		t.Errorf("a port no longer served is still refused: %q", got)
	}
}

func TestGuardSpend(t *testing.T) {
	g := &Guard{Rate: 10}
	t0 := time.Unix(1_000_000, 0)
	a := netip.MustParseAddr("192.0.2.1")
	sameNet := netip.MustParseAddr("192.0.2.200")
	other := netip.MustParseAddr("198.51.100.1")
	n := 0
	for g.spendAt(a, 10, t0) {
		n++
	}
	if n != 20 {
		t.Errorf("burst of %d answers, want 20 (twice the rate)", n)
	}
	if g.spendAt(sameNet, 10, t0) {
		t.Error("an address of the same /24 has a budget of its own")
	}
	if !g.spendAt(other, 10, t0) {
		t.Error("another network shares the first one's budget")
	}
	if !g.spendAt(a, 10, t0.Add(100*time.Millisecond)) || g.spendAt(a, 10, t0.Add(100*time.Millisecond)) {
		t.Error("100 ms at 10/s should refill exactly one answer")
	}
	// Each KiB costs one more answer: a 64 KiB echo costs 65.
	big := netip.MustParseAddr("203.0.113.1")
	if g.spendAt(big, 64<<10, t0) {
		t.Error("a 64 KiB answer fit in a burst of 20")
	}
	if !g.spendAt(big, 19<<10, t0) {
		t.Error("a 19 KiB answer (cost 20) did not fit in a fresh burst of 20")
	}
}

// TestPacketStop: ServePacket follows the stop contract.
func TestPacketStop(t *testing.T) {
	s := &PacketServer{Reply: echoReply}
	pc, err := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan error, 1)
	go func() { done <- s.ServePacket(context.Background(), pc) }()
	time.Sleep(20 * time.Millisecond)
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := <-done; !errors.Is(err, ErrServerClosed) {
		t.Errorf("ServePacket after Shutdown: %v", err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	again, _ := net.ListenUDP("udp", &net.UDPAddr{IP: net.IPv4(127, 0, 0, 1)})
	if err := s.ServePacket(context.Background(), again); !errors.Is(err, ErrServerClosed) {
		t.Errorf("ServePacket after Shutdown: %v", err)
	}
}
