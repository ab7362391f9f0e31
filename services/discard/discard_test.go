package discard

import (
	"bytes"
	"context"
	"crypto/rand"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/services/netserver"
)

// TestNetcat sends to discard the way a person does, with the real nc: a
// megabyte over TCP and a datagram over UDP, and nothing comes back.
func TestNetcat(t *testing.T) {
	nc := testenv.NeedTool(t, "nc")
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	tcp := &netserver.Server{Name: "discard", Handle: Handle}
	udp := &netserver.PacketServer{Name: "discard"}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 2)
	go func() { done <- tcp.Serve(ctx, ln) }()
	go func() { done <- udp.ServePacket(ctx, pc) }()
	defer func() {
		cancel()
		for range 2 {
			if err := <-done; err != nil {
				t.Errorf("Serve: %v", err)
			}
		}
	}()
	host, port, _ := net.SplitHostPort(ln.Addr().String())

	payload := make([]byte, 1<<20)
	rand.Read(payload)
	cmd := exec.Command(nc, "-N", "-w", "5", host, port)
	cmd.Stdin = bytes.NewReader(payload)
	out, err := cmd.Output()
	if err != nil || len(out) != 0 {
		t.Errorf("nc -N (tcp): %d bytes back, %v; want none", len(out), err)
	}

	cmd = exec.Command(nc, "-u", "-w", "1", host, port)
	cmd.Stdin = strings.NewReader("dans le vide\n")
	out, err = cmd.Output()
	if err != nil || len(out) != 0 {
		t.Errorf("nc -u: %q, %v; want nothing", out, err)
	}
	for deadline := time.Now().Add(5 * time.Second); udp.Stats().Received != 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("udp stats %+v, want 1 datagram received", udp.Stats())
		}
	}
	if st := udp.Stats(); st.Replied != 0 {
		t.Errorf("udp stats %+v: discard answered", st)
	}
	if st := tcp.Stats(); st.Accepted != 1 {
		t.Errorf("tcp stats %+v", st)
	}
}

// TestShutdownWakes: a client that keeps its connection open without
// sending is let go at once by Shutdown: discard has nothing to finish.
func TestShutdownWakes(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &netserver.Server{Handle: Handle}
	done := make(chan error, 1)
	go func() { done <- s.Serve(context.Background(), ln) }()
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	for s.Stats().Active != 1 {
		time.Sleep(5 * time.Millisecond)
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	c.SetReadDeadline(time.Now().Add(time.Second))
	if n, err := c.Read(make([]byte, 1)); n != 0 || err == nil {
		t.Errorf("read after Shutdown: %d, %v; want the end of the connection", n, err)
	}
	<-done
}
