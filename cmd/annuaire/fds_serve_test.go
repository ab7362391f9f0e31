package main

import (
	"bufio"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
)

// TestServeLowFileLimit runs serve under RLIMIT_NOFILE 256 (set by the
// child itself, setrlimit(2)) and floods its web server from many
// addresses with event streams, then with connections, until it refuses
// them: the health checker, DNS over UDP and TCP, and echo keep working,
// the API answers while only streams are full, and nothing runs out of
// descriptors. (20,000 event streams used to take every descriptor:
// health checks failed with "too many open files", every hosted service
// went critical and left DNS, TCP DNS, the API and echo stopped
// answering.)
func TestServeLowFileLimit(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("needs the whole of 127.0.0.0/8 on loopback, as Linux has it")
	}
	testenv.NeedTool(t, "dig")
	a := startServeEnv(t, t.TempDir(), []string{"ANNUAIRE_TEST_NOFILE=256"})
	if !strings.Contains(a.stderr.String(), "connection caps lowered") {
		t.Errorf("no warning that the caps were lowered:\n%s", a.stderr)
	}

	// A service with a tcp check every 300 ms, on a listener of the test.
	probe, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer probe.Close()
	go func() {
		for {
			c, err := probe.Accept()
			if err != nil {
				return
			}
			c.Close()
		}
	}()
	token, err := os.ReadFile(filepath.Join(a.data, "token"))
	if err != nil {
		t.Fatal(err)
	}
	_, port, _ := net.SplitHostPort(probe.Addr().String())
	req, _ := http.NewRequest("POST", "http://"+a.web+"/api/services", strings.NewReader(
		`{"name":"probe","port":`+port+`,"addresses":["127.0.0.1"],"check":{"type":"tcp","interval":"300ms"}}`))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil || resp.StatusCode != 201 {
		t.Fatalf("register: %v %v", resp, err)
	}
	resp.Body.Close()
	inDNS := func(service string) bool {
		return strings.Contains(dig(t, a.dns, "+norec", "_"+service+"._tcp.svc.internal.", "SRV"), "\tSRV\t")
	}
	deadline := time.Now().Add(10 * time.Second)
	for !inDNS("probe") {
		if time.Now().After(deadline) {
			t.Fatal("the probe never passed")
		}
		time.Sleep(100 * time.Millisecond)
	}

	// Streams from 127.0.0.2, .3, ... until the server refuses one for
	// having too many (503), the way the attack opened them.
	var held []net.Conn
	defer func() {
		for _, c := range held {
			c.Close()
		}
	}()
	ip := 2
	open := func(request string) int {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, byte(ip))}, Timeout: 5 * time.Second}
		ip = ip%250 + 2
		c, err := d.Dial("tcp", a.web)
		if err != nil {
			t.Fatalf("connect: %v", err)
		}
		fmt.Fprint(c, request)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatalf("%q: %v", request, err)
		}
		c.SetReadDeadline(time.Time{})
		if resp.StatusCode == 200 {
			held = append(held, c)
		} else {
			c.Close()
		}
		return resp.StatusCode
	}
	streams, code := 0, 0
	for ; ; streams++ {
		if code = open("GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); code != 200 || streams == 2000 {
			break
		}
	}
	if code != http.StatusServiceUnavailable || streams < 10 {
		t.Fatalf("%d streams, then %d: want some, then 503", streams, code)
	}
	t.Logf("%d streams open, the next refused", streams)
	r, err := http.Get("http://" + a.web + "/healthz")
	if err != nil || r.StatusCode != 200 {
		t.Fatalf("the API with every stream taken: %v %v", r, err)
	}
	r.Body.Close()

	// Then idle connections, each after a request, until the server
	// refuses one at accept.
	conns := 0
	for ; ; conns++ {
		if code = open("GET /healthz HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"); code != 200 || conns == 2000 {
			break
		}
	}
	if code != http.StatusServiceUnavailable || conns < 10 {
		t.Fatalf("%d connections, then %d: want some, then 503", conns, code)
	}
	t.Logf("then %d more connections, the next refused", conns)

	// Everything else still has its descriptors.
	for _, args := range [][]string{{"svc.internal.", "SOA"}, {"+tcp", "svc.internal.", "SOA"}} {
		if out := dig(t, a.dns, args...); !strings.Contains(out, "status: NOERROR") || !strings.Contains(out, "\tSOA\t") {
			t.Errorf("dig %v with the web full:\n%s", args, out)
		}
	}
	c, err := net.DialTimeout("tcp", a.echo, 5*time.Second)
	if err != nil {
		t.Fatalf("echo with the web full: %v", err)
	}
	c.SetDeadline(time.Now().Add(5 * time.Second))
	fmt.Fprint(c, "bonjour\n")
	if line, err := bufio.NewReader(c).ReadString('\n'); line != "bonjour\n" {
		t.Errorf("echo with the web full: %q %v", line, err)
	}
	c.Close()
	time.Sleep(2 * time.Second) // several probe intervals
	for _, service := range []string{"probe", "echo", "smtp", "telnet"} {
		if !inDNS(service) {
			t.Errorf("%s left DNS while the web was full", service)
		}
	}
	if strings.Contains(a.stderr.String(), "too many open files") {
		t.Errorf("serve ran out of descriptors:\n%s", a.stderr)
	}
}
