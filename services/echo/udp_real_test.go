package echo

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os/exec"
	"runtime"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/services/netserver"
)

// serveUDP serves s on a fresh loopback UDP socket until the test ends,
// and returns its port.
func serveUDP(t *testing.T, s *Server) int {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.ServePacket(ctx, pc) }()
	t.Cleanup(func() { cancel(); <-done })
	return pc.LocalAddr().(*net.UDPAddr).Port
}

// forgeSelf is CVE-1999-0103's datagram, sent by an attacker: its source
// is the echo service's own address and port. Only a raw socket can write
// such a source (IPPROTO_RAW: the script writes the IP header; Linux
// fills in its checksum, and a UDP checksum of 0 means none).
const forgeSelf = `
import socket, struct, sys
port = int(sys.argv[1])
payload = b"bonjour moi-meme\n"
udp = struct.pack("!HHHH", port, port, 8 + len(payload), 0) + payload
lo = socket.inet_aton("127.0.0.1")
ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 0, 0, 64, socket.IPPROTO_UDP, 0, lo, lo)
try:
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_RAW)
except PermissionError as e:
    print("raw socket:", e)
    sys.exit(3)
s.sendto(ip + udp, ("127.0.0.1", 0))
`

// TestUDPForgedSelf: a datagram forged by another program with the echo
// service's own address and port as its source gets no answer, so echo
// does not start answering itself (before the Guard, one such datagram
// kept it busy for good).
func TestUDPForgedSelf(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("the raw socket's header rules are Linux's")
	}
	py := testenv.Python(t)
	srv := &Server{}
	port := serveUDP(t, srv)
	out, err := exec.Command(py, "-c", forgeSelf, strconv.Itoa(port)).CombinedOutput()
	if ee := (*exec.ExitError)(nil); errors.As(err, &ee) && ee.ExitCode() == 3 {
		t.Skipf("cannot forge a datagram here (needs CAP_NET_RAW): %s", out)
	}
	if err != nil {
		t.Fatalf("python3: %v\n%s", err, out)
	}
	for deadline := time.Now().Add(5 * time.Second); srv.Stats().Refused < 1; time.Sleep(5 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("stats %+v: the forged datagram was not refused", srv.Stats())
		}
	}
	time.Sleep(200 * time.Millisecond) // a loop would show by now
	if st := srv.Stats(); st.Datagrams != 0 || st.Refused != 1 {
		t.Errorf("stats %+v: want the forged datagram refused and nothing echoed", st)
	}
}

// flood sends n datagrams of size bytes to the port as fast as it can
// from one socket, counts the answers until half a second after the
// last, and prints "ANSWERS SECONDS".
const flood = `
import socket, sys, time
port, size, n = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3])
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 22)
s.connect(("127.0.0.1", port))
s.setblocking(False)
msg = b"x" * size
got = 0
def drain():
    global got
    while True:
        try:
            s.recv(65536)
        except (BlockingIOError, ConnectionRefusedError):
            return
        got += 1
start = time.monotonic()
for i in range(n):
    try:
        s.send(msg)
    except (BlockingIOError, ConnectionRefusedError):
        pass
    drain()
end = time.monotonic() + 0.5
while time.monotonic() < end:
    time.sleep(0.01)
    drain()
print(got, time.monotonic() - start)
`

// TestUDPFlood: one source flooding echo with the largest datagrams gets
// a burst and then the Guard's rate, each KiB of an answer counting as one
// more answer, whatever it sends (before, 26,500 datagrams of 65,000
// bytes a second came back). The client is python3, counting what it
// receives.
func TestUDPFlood(t *testing.T) {
	py := testenv.Python(t)
	for _, tc := range []struct {
		size, n int
	}{
		{65000, 2000}, // each answer costs 64: a burst of 3, then 1.6 a second
		{100, 5000},   // each costs 1: a burst of 200, then 100 a second
	} {
		t.Run(strconv.Itoa(tc.size), func(t *testing.T) {
			srv := &Server{}
			port := serveUDP(t, srv)
			out, err := exec.Command(py, "-c", flood, strconv.Itoa(port), strconv.Itoa(tc.size), strconv.Itoa(tc.n)).CombinedOutput()
			if err != nil {
				t.Fatalf("python3: %v\n%s", err, out)
			}
			var got int
			var seconds float64
			if _, err := fmt.Sscan(strings.TrimSpace(string(out)), &got, &seconds); err != nil {
				t.Fatalf("python3 printed %q: %v", out, err)
			}
			cost := 1 + float64(tc.size/1024)
			burst := 2 * netserver.DefaultRate / cost
			most := burst + netserver.DefaultRate/cost*seconds + 1
			st := srv.Stats()
			t.Logf("%d datagrams of %d bytes in %.2f s: %d answers received (the server read %d, answered %d, refused %d; at most %.0f allowed)",
				tc.n, tc.size, seconds, got, st.Datagrams+st.Refused, st.Datagrams, st.Refused, most)
			if got < 1 || float64(got) > most || float64(st.Datagrams) > most {
				t.Errorf("%d answers received, %d sent: want between 1 and %.0f", got, st.Datagrams, most)
			}
		})
	}
}
