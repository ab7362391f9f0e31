package authority

import (
	"fmt"
	"log/slog"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/authority/internal/authtest"
	"github.com/annuaire/annuaire/internal/testenv"
)

// TestRecursorsReverse puts PowerDNS Recursor and dnsmasq in front of
// annuaire, as TestUnbound does unbound, each forwarding annuaire's zones
// to it: both find the names of known addresses, say NXDOMAIN for an
// unknown one and keep that answer in their cache, since it carries the
// zone's SOA (RFC 2308 section 5). Issue 13: through both, every unknown
// address was a SERVFAIL asked again each time ("got REFUSED").
func TestRecursorsReverse(t *testing.T) {
	zones := []string{"svc.internal", "0.0.127.in-addr.arpa", "0.0.0.0.0.0.0.0.8.b.d.0.1.0.0.2.ip6.arpa"}
	for _, rc := range []struct {
		name string
		tool string
		// args returns the command line serving on port, forwarding
		// zones to annuaire at addr, its files in dir.
		args func(t *testing.T, dir string, port int, addr string) []string
	}{
		{"pdns_recursor", "pdns_recursor", func(t *testing.T, dir string, port int, addr string) []string {
			var fwd []string
			for _, z := range zones {
				fwd = append(fwd, z+"="+addr)
			}
			// forward-zones sends RD=0 queries, as to an authoritative
			// server. dont-query is every address but 127.0.0.0/8: the
			// default keeps the recursor off loopback, and without one it
			// primes its cache from the root servers, off the machine.
			conf := fmt.Sprintf("local-address=127.0.0.1\nlocal-port=%d\nsocket-dir=%s\nforward-zones=%s\n"+
				"dont-query=0.0.0.0/2,64.0.0.0/3,96.0.0.0/4,112.0.0.0/5,120.0.0.0/6,124.0.0.0/7,126.0.0.0/8,128.0.0.0/1,::/0\n"+
				"dnssec=off\ndaemon=no\nwrite-pid=no\nquiet=yes\n", port, dir, strings.Join(fwd, ","))
			if err := os.WriteFile(filepath.Join(dir, "recursor.conf"), []byte(conf), 0o600); err != nil {
				t.Fatal(err)
			}
			return []string{"--config-dir=" + dir}
		}},
		{"dnsmasq", "dnsmasq", func(t *testing.T, dir string, port int, addr string) []string {
			host, aport, _ := net.SplitHostPort(addr)
			args := []string{"-d", "-k", "--conf-file=/dev/null", "--no-resolv", "--no-hosts", "--bind-interfaces",
				"--listen-address=127.0.0.1", fmt.Sprintf("--port=%d", port), "--pid-file=" + filepath.Join(dir, "pid"),
				"--cache-size=1000"}
			for _, z := range zones {
				args = append(args, fmt.Sprintf("--server=/%s/%s#%s", z, host, aport))
			}
			return args
		}},
	} {
		t.Run(rc.name, func(t *testing.T) {
			bin := testenv.NeedTool(t, rc.tool)
			m := NewMetrics()
			addr := authtest.Start(t, &Server{Registry: clientsRegistry(t), Metrics: m, Logger: slog.New(slog.DiscardHandler)})
			dir := t.TempDir()
			port := testenv.FreePort(t)
			testenv.Daemon(t, rc.name, nil, bin, rc.args(t, dir, port, addr)...)
			front := fmt.Sprintf("127.0.0.1:%d", port)
			digPath := testenv.NeedTool(t, "dig")
			for deadline := time.Now().Add(10 * time.Second); ; time.Sleep(100 * time.Millisecond) {
				err := exec.Command(digPath, "@127.0.0.1", "-p", fmt.Sprint(port), "+time=1", "+tries=1", "svc.internal", "SOA").Run()
				if err == nil {
					break
				}
				if time.Now().After(deadline) {
					t.Fatalf("%s does not answer: %v", rc.name, err)
				}
			}
			for _, c := range []struct {
				args, status, ptr string
			}{
				{"-x 127.0.0.2", "NOERROR", "web.svc.internal."},
				{"-x 2001:db8::2", "NOERROR", "web.svc.internal."},
				{"-x 127.0.0.9", "NXDOMAIN", ""},
				{"-x 2001:db8::9", "NXDOMAIN", ""},
			} {
				r := dig(t, front, strings.Fields(c.args)...)
				var ptr string
				if len(r.answer) == 1 {
					f := strings.Fields(r.answer[0])
					ptr = f[len(f)-1]
				}
				if r.status != c.status || ptr != c.ptr || len(r.answer) > 1 {
					t.Errorf("%s through %s: %s %v, want %s %q", c.args, rc.name, r.status, r.answer, c.status, c.ptr)
				}
			}
			// Asked again, the unknown addresses are answered from the
			// recursor's cache: annuaire said NXDOMAIN once for each.
			asked := answered(t, m, "PTR", "NXDOMAIN")
			for range 3 {
				for _, ip := range []string{"127.0.0.9", "2001:db8::9"} {
					if r := dig(t, front, "-x", ip); r.status != "NXDOMAIN" {
						t.Errorf("%s again through %s: %s", ip, rc.name, r.status)
					}
				}
			}
			if after := answered(t, m, "PTR", "NXDOMAIN"); asked != 2 || after != asked {
				t.Errorf("annuaire answered %v NXDOMAIN PTR queries, then %v after asking again: want 2 (one per address), %s's cache for the rest", asked, after, rc.name)
			}
		})
	}
}
