package echo

import (
	"context"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
)

// TestUDPLoop is CVE-1999-0103 (issue 18): a datagram whose source is the
// echo service's own address and port, or the port of another small
// service (chargen, 19), must get no answer, or the two would answer each
// other forever. Writing from the server's own socket to itself sends
// exactly the self-addressed datagram, with no forged packet needed; nc
// sends from port 19 when allowed to bind it (root).
func TestUDPLoop(t *testing.T) {
	srv := &Server{}
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- srv.ServePacket(ctx, pc) }()
	t.Cleanup(func() { cancel(); <-done })
	addr := pc.LocalAddr().String()

	waitRefused := func(n int64) {
		t.Helper()
		for deadline := time.Now().Add(5 * time.Second); srv.Stats().Refused < n; time.Sleep(5 * time.Millisecond) {
			if time.Now().After(deadline) {
				t.Fatalf("stats %+v, want %d refused", srv.Stats(), n)
			}
		}
		time.Sleep(100 * time.Millisecond) // a loop would show by now
		if st := srv.Stats(); st.Datagrams != 0 || st.Refused != n {
			t.Fatalf("stats %+v: want no echo, %d refused", st, n)
		}
	}

	if _, err := pc.WriteTo([]byte("bonjour moi-même\n"), pc.LocalAddr()); err != nil {
		t.Fatal(err)
	}
	waitRefused(1)

	t.Run("nc from chargen's port", func(t *testing.T) {
		nc := testenv.NeedTool(t, "nc")
		host, port, _ := net.SplitHostPort(addr)
		cmd := exec.Command(nc, "-u", "-p", "19", "-w", "1", host, port)
		cmd.Stdin = strings.NewReader("!\"#$%&'()*+,-./0123456789:;<=>?@ABCDEFGHIJKLMNOPQRSTUVWXYZ[\\]^_`abcdefgh\r\n")
		out, err := cmd.CombinedOutput()
		if strings.Contains(string(out), "ermission denied") || strings.Contains(string(out), "in use") {
			t.Skipf("nc cannot send from port 19 here: %s", out)
		}
		if err != nil || len(out) != 0 {
			t.Fatalf("nc -u -p 19: %q, %v; want no answer", out, err)
		}
		waitRefused(2)
	})
}
