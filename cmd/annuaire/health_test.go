package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/registry"
)

// TestIterativeQueueStaysHealthy is the course's iterative server dialed by
// name (issue 15): with --echo-mode iterative --backlog 1, one nc client
// held and a second one queued behind it, the listen queue holds that one
// client and nothing else (annuaire does not queue health checks of its
// own), and echo stays healthy and in DNS, over TCP and UDP, for longer
// than the hosted services' check interval. When the first client leaves,
// the queued one is served.
func TestIterativeQueueStaysHealthy(t *testing.T) {
	ssPath := testenv.NeedTool(t, "ss")
	ncPath := testenv.NeedTool(t, "nc")
	testenv.NeedTool(t, "dig")
	t.Parallel()
	a := startServe(t, "--echo-mode", "iterative", "--backlog", "1")
	_, port, _ := net.SplitHostPort(a.echo)

	// The first client: served, and holding its connection open.
	first := exec.Command(ncPath, "-N", "127.0.0.1", port)
	firstIn, _ := first.StdinPipe()
	firstOut, _ := first.StdoutPipe()
	if err := first.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { first.Process.Kill(); first.Wait() })
	io.WriteString(firstIn, "premier\n")
	if line, err := readLine(firstOut, 5*time.Second); line != "premier\n" {
		t.Fatalf("first client read %q, %v", line, err)
	}
	// The second: its connect completes (the kernel queues it), its echo waits.
	second := exec.Command(ncPath, "-N", "127.0.0.1", port)
	second.Stdin = strings.NewReader("second\n")
	secondOut := &syncBuffer{}
	second.Stdout = secondOut
	if err := second.Start(); err != nil {
		t.Fatal(err)
	}
	secondDone := make(chan struct{}) // closed once second has exited
	go func() { second.Wait(); close(secondDone) }()
	t.Cleanup(func() { second.Process.Kill(); <-secondDone })

	// Longer than two intervals of the hosted services' checks.
	for end := time.Now().Add(12 * time.Second); time.Now().Before(end); time.Sleep(time.Second) {
		out, err := exec.Command(ssPath, "-ltnH", "sport = :"+port).Output()
		if err != nil {
			t.Fatalf("ss: %v", err)
		}
		fields := strings.Fields(string(out))
		if len(fields) < 2 || fields[1] != "1" && fields[1] != "0" {
			t.Fatalf("ss -ltn: Recv-Q is not the one queued client: %q", out)
		}
		for _, proto := range []string{"tcp", "udp"} {
			srv := dig(t, a.dns, "+short", "_echo._"+proto+".svc.internal.", "SRV")
			if !strings.Contains(srv, " "+port+" box.svc.internal.") {
				t.Fatalf("_echo._%s left DNS while the server was busy: %q", proto, srv)
			}
		}
		for _, inst := range hostedInstances(t, a.web, "echo") {
			if inst.Health != "passing" {
				t.Fatalf("echo/%s went %s while the server was busy", inst.Proto, inst.Health)
			}
		}
	}
	select {
	case <-secondDone:
		t.Fatalf("the queued client ended before its turn: %q", secondOut)
	default:
	}
	firstIn.Close() // the first client leaves; the queued one is served
	select {
	case <-secondDone:
	case <-time.After(10 * time.Second):
		t.Fatal("the queued client was not served after the first left")
	}
	if got := secondOut.String(); got != "second\n" {
		t.Errorf("queued client read %q, want its echo", got)
	}
}

// readLine reads one line from r within limit.
func readLine(r io.Reader, limit time.Duration) (string, error) {
	type result struct {
		s   string
		err error
	}
	ch := make(chan result, 1)
	go func() {
		s, err := bufio.NewReader(r).ReadString('\n')
		ch <- result{s, err}
	}()
	select {
	case r := <-ch:
		return r.s, r.err
	case <-time.After(limit):
		return "", io.ErrNoProgress
	}
}

type apiInstance struct {
	ID, Name, Proto, Health string
	Check                   *struct{ Type, Target string }
}

// hostedInstances returns the instances of service that annuaire hosts.
func hostedInstances(t *testing.T, web, service string) []apiInstance {
	t.Helper()
	resp, err := http.Get("http://" + web + "/api/services")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []apiInstance
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	var out []apiInstance
	for _, inst := range list {
		if inst.Name == service && strings.HasPrefix(inst.ID, "annuaire-") {
			out = append(out, inst)
		}
	}
	if len(out) == 0 {
		t.Fatalf("no hosted %s instance in /api/services", service)
	}
	return out
}

// TestHostedHealthFollowsServeLoop: a hosted instance stays passing while
// its serve loop runs and its socket is open, however busy the server, and
// turns critical within its ttl once the loop has ended; nothing dials it.
func TestHostedHealthFollowsServeLoop(t *testing.T) {
	t.Parallel()
	const ttl = 300 * time.Millisecond
	p := contractProcess(t, "iterative")
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go p.checker.Run(ctx)

	var row hostedService
	for _, h := range hostedServices() {
		if h.flag == "echo" {
			row = h
		}
	}
	sockets, err := listenHosted(ctx, p.flags, row, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := row.start(p)
	served := make(chan error, len(sockets))
	for _, s := range sockets {
		s.id = "annuaire-echo-" + s.proto
		inst := registry.Instance{ID: s.id, Service: "echo", Proto: s.proto, Host: "box", Port: 7, Check: hostedCheck(ttl)}
		if _, err := p.reg.Register(inst, &registry.Host{Name: "box", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}}); err != nil {
			t.Fatal(err)
		}
		go func() { served <- s.serve(ctx, srv) }()
	}
	go heartbeat(ctx, p.checker, sockets, ttl/5)

	// One client holds the iterative server; its listen queue is the
	// system's, but nothing else would be accepted anyway.
	c := dialContract(t, sockets[0].addr().String())
	fmt.Fprintf(c, "je reste\n")
	readUntil(t, bufio.NewReader(c), "je reste\n")

	health := func() map[string]registry.Health {
		out := map[string]registry.Health{}
		for _, s := range sockets {
			inst, _ := p.reg.Snapshot().Instance(s.id)
			out[s.proto] = inst.Health
		}
		return out
	}
	for end := time.Now().Add(4 * ttl); time.Now().Before(end); time.Sleep(ttl / 10) {
		for proto, h := range health() {
			if h != registry.Passing {
				t.Fatalf("echo/%s went %s while its loop was serving", proto, h)
			}
		}
	}

	sctx, scancel := context.WithTimeout(context.Background(), 100*time.Millisecond)
	defer scancel()
	srv.shutdown(sctx)
	for range sockets {
		<-served
	}
	for deadline := time.Now().Add(10 * ttl); ; time.Sleep(ttl / 10) {
		h := health()
		if h["tcp"] == registry.Critical && h["udp"] == registry.Critical {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("health %v %v after the serve loops ended, want critical", h, 10*ttl)
		}
	}
}
