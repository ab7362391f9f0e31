//go:build !portable

package authority

import (
	"context"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/annuaire/annuaire/authority/internal/authtest"
)

// TestUDPReaderLingers checks the socket the batched readers wait on in
// recvmmsg (wire's lingerOn): blocking, with the receive timeout that
// bounds their wait, and still the only descriptor of the socket; dig
// gets the cache's answers and the full path's (an unknown EDNS option
// goes to miekg/dns, whose answer leaves through the blocking socket);
// and a server with no traffic, its readers asleep in recvmmsg, stops at
// once and frees its port.
func TestUDPReaderLingers(t *testing.T) {
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	inode := socketInode(t, pc.LocalAddr().(*net.UDPAddr).Port)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	done := make(chan error, 1)
	go func() {
		done <- (&Server{Registry: authtest.Registry(t), Zone: authtest.Zone}).ServePacket(ctx, pc)
	}()

	if r := dig(t, addr, "+norec", "soa", authtest.Zone); r.status != "NOERROR" || len(r.answer) != 1 {
		t.Errorf("SOA from the cache: %s %v", r.status, r.answer)
	}
	if r := dig(t, addr, "+norec", "+ednsopt=65001:abcd", "soa", authtest.Zone); r.status != "NOERROR" || len(r.answer) != 1 {
		t.Errorf("SOA from the full path: %s %v", r.status, r.answer)
	}

	fds := descriptorsOf(t, inode)
	if len(fds) != 1 {
		t.Fatalf("the socket has descriptors %v, want one", fds)
	}
	if flags := fdFlags(t, fds[0]); flags&unix.O_NONBLOCK != 0 {
		t.Errorf("the socket's flags are %#o: non-blocking, so its readers cannot wait in recvmmsg", flags)
	}
	tv, err := unix.GetsockoptTimeval(fds[0], unix.SOL_SOCKET, unix.SO_RCVTIMEO)
	if err != nil {
		t.Fatal(err)
	}
	if d := time.Duration(tv.Nano()); d <= 0 || d > 10*time.Millisecond {
		t.Errorf("receive timeout %v: a reader's wait in recvmmsg must be bounded, and short", d)
	}

	time.Sleep(50 * time.Millisecond) // no traffic: the readers wait
	start := time.Now()
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Errorf("ServePacket: %v", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("ServePacket did not return after its context ended")
	}
	if d := time.Since(start); d > time.Second {
		t.Errorf("stopped in %v", d)
	}
	if fds := descriptorsOf(t, inode); len(fds) != 0 {
		t.Errorf("the socket is still open: descriptors %v", fds)
	}
	again, err := net.ListenPacket("udp", addr)
	if err != nil {
		t.Fatalf("port still bound: %v", err)
	}
	again.Close()
}

// socketInode is the inode of the UDP socket bound to port on 127.0.0.1,
// from /proc/net/udp.
func socketInode(t *testing.T, port int) string {
	t.Helper()
	b, err := os.ReadFile("/proc/net/udp")
	if err != nil {
		t.Skip(err)
	}
	local := fmt.Sprintf("0100007F:%04X", port)
	for _, line := range strings.Split(string(b), "\n")[1:] {
		if f := strings.Fields(line); len(f) > 9 && f[1] == local {
			return f[9]
		}
	}
	t.Fatalf("no socket on %s in /proc/net/udp", local)
	return ""
}

// descriptorsOf lists this process's descriptors of the socket inode.
func descriptorsOf(t *testing.T, inode string) []int {
	t.Helper()
	links, err := filepath.Glob("/proc/self/fd/*")
	if err != nil {
		t.Fatal(err)
	}
	var fds []int
	for _, l := range links {
		if target, err := os.Readlink(l); err == nil && target == "socket:["+inode+"]" {
			fd, _ := strconv.Atoi(filepath.Base(l))
			fds = append(fds, fd)
		}
	}
	return fds
}

// fdFlags is the open file's flags of fd, from /proc/self/fdinfo.
func fdFlags(t *testing.T, fd int) int64 {
	t.Helper()
	b, err := os.ReadFile(fmt.Sprintf("/proc/self/fdinfo/%d", fd))
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n") {
		if v, ok := strings.CutPrefix(line, "flags:"); ok {
			flags, err := strconv.ParseInt(strings.TrimSpace(v), 8, 64)
			if err != nil {
				t.Fatal(err)
			}
			return flags
		}
	}
	t.Fatalf("no flags in fdinfo of %d", fd)
	return 0
}
