package registry

import (
	"fmt"
	"net"
	"net/netip"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
)

// TestCheckHTTPRedirectStaysHome: a student's http check may only target
// one of its own addresses (checkTarget), so that the checker, which runs
// from the server's machine and shows what it found to everyone, cannot
// be pointed at 169.254.169.254 or at another host's ports. The student's
// own server, Python's http.server here, answers 302 to an address it
// does not hold: the checker must not follow, and a 3xx passes as the
// README says. It used to follow up to three redirects, to any address.
func TestCheckHTTPRedirectStaysHome(t *testing.T) {
	var probed atomic.Int32 // the address the student may not check
	other := testenv.ServeTCP(t, func(c net.Conn) { probed.Add(1) })
	target := fmt.Sprintf("http://%s/latest/meta-data/", other.Addr())

	port := testenv.PythonServer(t, `
import http.server, sys
class H(http.server.BaseHTTPRequestHandler):
    def do_GET(self):
        self.send_response(302)
        self.send_header("Location", sys.argv[1])
        self.end_headers()
    def log_message(self, *a):
        pass
s = http.server.HTTPServer(("127.0.0.2", 0), H)
print(s.server_address[1], flush=True)
s.serve_forever()
`, target)

	r := New(1)
	c := &Checker{Registry: r}
	startChecker(t, c)
	var (
		id  string
		err error
	)
	_, err = r.Update(func(tx *Tx) error {
		id, err = tx.Register(Registration{Service: "web", Port: new(port), Owner: "alice",
			Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.2")},
			Check:     &Check{Type: "http", Target: fmt.Sprintf("http://127.0.0.2:%d/", port), Interval: every(100 * time.Millisecond)}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(10 * time.Second)
	res, ok := c.Result(id)
	for ; !ok && time.Now().Before(deadline); res, ok = c.Result(id) {
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(300 * time.Millisecond) // a few more checks
	if n := probed.Load(); n != 0 {
		t.Errorf("the check followed the redirect to %s: %d connections there", target, n)
	}
	if !ok || res.Health != Passing {
		t.Errorf("a 302 is a 3xx, which passes: %+v, %v", res, ok)
	}
}
