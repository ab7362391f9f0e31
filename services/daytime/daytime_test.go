package daytime

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/services/netserver"
)

// serve runs daytime over TCP and UDP on one loopback port, as annuaire's
// daytime row does, until the test ends.
func serve(t *testing.T) (host, port string, udp *netserver.PacketServer) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tcp := &netserver.Server{Name: "daytime", Handle: Handle}
	udp = &netserver.PacketServer{Name: "daytime", Reply: Reply}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- tcp.Serve(ctx, ln) }()
	go func() { done <- udp.ServePacket(ctx, pc) }()
	t.Cleanup(func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	})
	host, port, _ = net.SplitHostPort(ln.Addr().String())
	return host, port, udp
}

// checkLine checks that out is one daytime line for about now.
func checkLine(t *testing.T, how string, out []byte) {
	t.Helper()
	s := string(out)
	if !strings.HasSuffix(s, "\r\n") || strings.Count(s, "\n") != 1 {
		t.Fatalf("%s: %q is not one CRLF line", how, s)
	}
	when, err := time.ParseInLocation(Format, strings.TrimSuffix(s, "\r\n"), time.Local)
	if err != nil {
		t.Fatalf("%s: %q: %v", how, s, err)
	}
	if d := time.Since(when); d < -2*time.Second || d > 10*time.Second {
		t.Errorf("%s: %q is %v away from now", how, s, d)
	}
}

// TestNetcat asks the time the way a person does, with the real nc: over
// TCP with nothing to say, over TCP after sending a line (which the
// service throws away without resetting the connection), and over UDP.
func TestNetcat(t *testing.T) {
	nc := testenv.NeedTool(t, "nc")
	host, port, udp := serve(t)

	out, err := exec.Command(nc, "-w", "5", host, port).Output()
	if err != nil {
		t.Fatalf("nc (tcp): %v", err)
	}
	checkLine(t, "nc", out)

	cmd := exec.Command(nc, "-N", "-w", "5", host, port)
	cmd.Stdin = strings.NewReader("quelle heure est-il ?\n")
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("nc -N (tcp): %v", err)
	}
	checkLine(t, "nc -N with a line", out)

	cmd = exec.Command(nc, "-u", "-w", "1", host, port)
	cmd.Stdin = strings.NewReader("\n")
	out, err = cmd.Output()
	if err != nil {
		t.Fatalf("nc -u: %v", err)
	}
	checkLine(t, "nc -u", out)
	if st := udp.Stats(); st.Received != 1 || st.Replied != 1 {
		t.Errorf("udp stats %+v", st)
	}
}

func TestLine(t *testing.T) {
	at := time.Date(1982, time.February, 22, 17, 37, 43, 0, time.FixedZone("PST", -8*3600))
	if got, want := string(Line(at)), "Monday, February 22, 1982 17:37:43-PST\r\n"; got != want {
		t.Errorf("Line = %q, want %q (RFC 867's example, on the right weekday)", got, want)
	}
}
