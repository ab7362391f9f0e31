package main

import (
	"bufio"
	"bytes"
	"context"
	"crypto/rand"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
)

// TestMain lets the test binary be the annuaire command: the end-to-end
// tests start it as a child process, exactly as a user would, and process
// mode's echo children re-execute it too.
func TestMain(m *testing.M) {
	if os.Getenv("ANNUAIRE_TEST_MAIN") == "1" {
		if n := os.Getenv("ANNUAIRE_TEST_NOFILE"); n != "" {
			if err := setFileLimit(n); err != nil {
				fmt.Fprintln(os.Stderr, "setrlimit:", err)
				os.Exit(2)
			}
		}
		os.Exit(mainExit())
	}
	os.Exit(m.Run())
}

// annuaire is a running "annuaire serve" child process.
type annuaire struct {
	cmd    *exec.Cmd
	data   string
	dns    string // 127.0.0.1:port
	web    string
	echo   string // from the "echo ... → 127.0.0.1:port" line
	stdout *syncBuffer
	stderr *syncBuffer
	exited chan error
}

type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

func command(t *testing.T, args ...string) *exec.Cmd {
	cmd := exec.Command(os.Args[0], args...)
	cmd.Env = append(os.Environ(), "ANNUAIRE_TEST_MAIN=1")
	return cmd
}

var (
	reDNS  = regexp.MustCompile(`(?m)^dns\s+\S+ served on (\S+) `)
	reWeb  = regexp.MustCompile(`(?m)^web\s+http://(\S+)/`)
	reEcho = regexp.MustCompile(`(?m)^echo\s+_echo\._tcp\.\S+ SRV → \S+ → (\S+)$`)
)

// anyPorts are the flags that put every hosted service on a port the
// system picks.
func anyPorts() []string {
	var args []string
	for _, h := range hostedServices() {
		args = append(args, "--"+h.flag, "127.0.0.1:0")
	}
	return args
}

// startServe runs "annuaire serve" on :0 ports and waits until it prints
// its web line, the last one it prints at start.
func startServe(t *testing.T, extra ...string) *annuaire {
	t.Helper()
	return startServeOn(t, t.TempDir(), extra...)
}

// startServeOn is startServe on a given data directory.
func startServeOn(t *testing.T, data string, extra ...string) *annuaire {
	t.Helper()
	return startServeEnv(t, data, nil, extra...)
}

// startServeEnv is startServeOn with more environment variables.
func startServeEnv(t *testing.T, data string, env []string, extra ...string) *annuaire {
	t.Helper()
	a := &annuaire{data: data, stdout: &syncBuffer{}, stderr: &syncBuffer{}, exited: make(chan error, 1)}
	args := append(append([]string{"serve", "--dns", "127.0.0.1:0"}, anyPorts()...), "--data", a.data, "--hostname", "box")
	args = append(args, extra...)
	a.cmd = command(t, args...)
	a.cmd.Env = append(a.cmd.Env, env...)
	a.cmd.Stdout, a.cmd.Stderr = a.stdout, a.stderr
	if err := a.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { a.exited <- a.cmd.Wait() }()
	t.Cleanup(func() {
		a.cmd.Process.Kill()
		<-a.exited
		if t.Failed() {
			t.Logf("serve stdout:\n%s\nserve stderr:\n%s", a.stdout, a.stderr)
		}
	})
	deadline := time.Now().Add(20 * time.Second)
	for !reWeb.MatchString(a.stdout.String()) {
		select {
		case err := <-a.exited:
			a.exited <- err
			t.Fatalf("serve exited at start: %v\n%s%s", err, a.stdout, a.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("serve did not start:\n%s%s", a.stdout, a.stderr)
		}
	}
	out := a.stdout.String()
	a.dns = reDNS.FindStringSubmatch(out)[1]
	a.web = reWeb.FindStringSubmatch(out)[1]
	if m := reEcho.FindStringSubmatch(out); m != nil {
		a.echo = m[1]
	}
	return a
}

// waitExit waits for the process to exit and returns its exit code.
func (a *annuaire) waitExit(t *testing.T, within time.Duration) int {
	t.Helper()
	select {
	case err := <-a.exited:
		a.exited <- err
		if ee, ok := err.(*exec.ExitError); ok {
			return ee.ExitCode()
		}
		if err != nil {
			t.Fatal(err)
		}
		return 0
	case <-time.After(within):
		t.Fatalf("annuaire still running after %v", within)
		return -1
	}
}

func dig(t *testing.T, server string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(server)
	all := append([]string{"@" + host, "-p", port, "+time=2", "+tries=1"}, args...)
	out, err := exec.Command(testenv.NeedTool(t, "dig"), all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", all, err, out)
	}
	return string(out)
}

func TestServeEndToEnd(t *testing.T) {
	testenv.NeedTool(t, "dig")
	a := startServe(t)
	if a.echo == "" {
		t.Fatalf("no echo line in:\n%s", a.stdout)
	}
	_, echoPort, _ := net.SplitHostPort(a.echo)

	t.Run("dig SRV echo", func(t *testing.T) {
		out := dig(t, a.dns, "+norec", "_echo._tcp.svc.internal.", "SRV")
		for _, want := range []string{"status: NOERROR", " aa", "SRV\t0 0 " + echoPort + " box.svc.internal.", "box.svc.internal.\t"} {
			if !strings.Contains(out, want) {
				t.Errorf("missing %q in:\n%s", want, out)
			}
		}
	})
	t.Run("dig SOA NS over TCP", func(t *testing.T) {
		out := dig(t, a.dns, "+tcp", "+norec", "svc.internal.", "NS")
		if !strings.Contains(out, "NS\tns.svc.internal.") || !strings.Contains(out, "ns.svc.internal.") {
			t.Errorf("NS answer:\n%s", out)
		}
	})
	t.Run("dig -x", func(t *testing.T) {
		out := dig(t, a.dns, "-x", "127.0.0.1")
		if !strings.Contains(out, "PTR\tbox.svc.internal.") {
			t.Errorf("PTR answer:\n%s", out)
		}
	})
	t.Run("echo a line", func(t *testing.T) {
		c, err := net.DialTimeout("tcp", a.echo, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		fmt.Fprintf(c, "bonjour\n")
		line, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || line != "bonjour\n" {
			t.Errorf("echo = %q, %v", line, err)
		}
	})
	t.Run("echo 1 MiB", func(t *testing.T) {
		payload := make([]byte, 1<<20)
		rand.Read(payload)
		c, err := net.DialTimeout("tcp", a.echo, 5*time.Second)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(20 * time.Second))
		go func() {
			c.Write(payload)
			c.(*net.TCPConn).CloseWrite()
		}()
		got, err := io.ReadAll(c)
		if err != nil || !bytes.Equal(got, payload) {
			t.Errorf("echoed %d bytes (err %v), want the same %d bytes", len(got), err, len(payload))
		}
	})
	t.Run("web lists echo", func(t *testing.T) {
		resp, err := http.Get("http://" + a.web + "/api/services")
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var list []map[string]any
		if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
			t.Fatalf("/api/services is not a JSON array: %v", err)
		}
		found := false
		for _, s := range list {
			if s["name"] == "echo" && fmt.Sprint(s["port"]) == echoPort {
				found = true
			}
		}
		if !found {
			t.Errorf("echo:%s not in /api/services: %v", echoPort, list)
		}
		page, err := http.Get("http://" + a.web + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(page.Body)
		page.Body.Close()
		if !strings.Contains(string(body), "annuaire") {
			t.Errorf("page does not name annuaire")
		}
	})

	t.Run("metrics count queries", func(t *testing.T) {
		scrape := func() string {
			resp, err := http.Get("http://" + a.web + "/metrics")
			if err != nil {
				t.Fatal(err)
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			return string(b)
		}
		count := regexp.MustCompile(`(?m)^annuaire_dns_requests_total\{qtype="TXT",rcode="NOERROR"\} (\d+)$`)
		before := 0
		if m := count.FindStringSubmatch(scrape()); m != nil {
			fmt.Sscan(m[1], &before)
		}
		for range 5 {
			dig(t, a.dns, "box-"+echoPort+"._echo._tcp.svc.internal.", "TXT")
		}
		body := scrape()
		m := count.FindStringSubmatch(body)
		after := 0
		if m != nil {
			fmt.Sscan(m[1], &after)
		}
		if after < before+5 {
			t.Errorf("TXT queries counted %d → %d after 5 digs", before, after)
		}
		if !strings.Contains(body, `annuaire_connections_total{service="echo"}`) {
			t.Errorf("no echo connection counter in /metrics")
		}
	})

	// SIGTERM: exit 0 within 10 s, and the ports are closed.
	a.cmd.Process.Signal(syscall.SIGTERM)
	if code := a.waitExit(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code after SIGTERM = %d\n%s", code, a.stderr)
	}
	for _, addr := range []string{a.dns, a.web, a.echo} {
		if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			c.Close()
			t.Errorf("%s still accepts connections after exit", addr)
		}
	}
}

func TestStopCommand(t *testing.T) {
	a := startServe(t)
	out, err := command(t, "stop", "--data", a.data).CombinedOutput()
	if err != nil {
		t.Fatalf("annuaire stop: %v\n%s", err, out)
	}
	if code := a.waitExit(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code after stop = %d", code)
	}
	if c, err := net.DialTimeout("tcp", a.web, time.Second); err == nil {
		c.Close()
		t.Errorf("web port still open after stop")
	}
}

// TestServePortInUse: every address another program holds is named at
// once, each with its flag and what to do.
func TestServePortInUse(t *testing.T) {
	var busy []string
	for range 2 {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		busy = append(busy, ln.Addr().String())
	}
	args := append(append([]string{"serve", "--dns", "127.0.0.1:0"}, anyPorts()...), "--web", busy[0], "--telnet", busy[1], "--data", t.TempDir())
	cmd := command(t, args...)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	err := cmd.Run()
	ee, ok := err.(*exec.ExitError)
	if !ok || ee.ExitCode() != 1 {
		t.Fatalf("exit = %v, want 1\n%s", err, stderr.String())
	}
	want := "annuaire: --web " + busy[0] + ": address already in use: give --web another address, or :0 for any free port\n" +
		"annuaire: --telnet " + busy[1] + ": address already in use: give --telnet another address, or :0 for any free port\n"
	// Log lines may come before (with -tags portable, the journal says it
	// syncs in blocking calls): the errors are what is compared.
	var got strings.Builder
	for l := range strings.Lines(stderr.String()) {
		if !strings.HasPrefix(l, "time=") {
			got.WriteString(l)
		}
	}
	if got.String() != want {
		t.Errorf("stderr:\n%s\nwant:\n%s", stderr.String(), want)
	}
}

func TestServeBadFlags(t *testing.T) {
	for _, args := range [][]string{
		{"serve", "--no-such-flag"},
		{"serve", "--zone", "bad..zone"},
		{"serve", "--zone", "bad zone!"}, // miekg/dns takes it: any byte is a label's
		{"serve", "--zone", "."},
		{"serve", "--hostname", "a.b"}, // was cut to "a" without a word
		{"serve", "--hostname", "-x"},
		{"serve", "--echo-mode", "threads"},
		{"frobnicate"},
	} {
		var stdout, stderr bytes.Buffer
		e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
		err := Run(context.Background(), e, args)
		if code := exitCode(e, err); code != 2 {
			t.Errorf("%v: exit %d, want 2 (err %v)", args, code, err)
		}
		if lines := strings.Split(strings.TrimSuffix(stderr.String(), "\n"), "\n"); len(lines) != 2 || !strings.HasPrefix(lines[1], "try 'annuaire ") {
			t.Errorf("%v: stderr %q, want the line that is wrong and where to read more", args, stderr.String())
		}
	}
}

// TestKill9LosesNothingAcknowledged registers 200 instances through the
// API, kills the server with SIGKILL, restarts it on the same data
// directory and finds every acknowledged instance, in the API and in DNS.
func TestKill9LosesNothingAcknowledged(t *testing.T) {
	a := startServe(t)
	token, err := os.ReadFile(a.data + "/token")
	if err != nil {
		t.Fatal(err)
	}
	var (
		wg    sync.WaitGroup
		mu    sync.Mutex
		acked []string
	)
	for w := range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := w; i < 200; i += 8 {
				body := fmt.Sprintf(`{"name":"svc%d","port":%d,"addresses":["127.0.1.%d"]}`, i, 10000+i, i%250+1)
				req, _ := http.NewRequest("POST", "http://"+a.web+"/api/services", strings.NewReader(body))
				req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Error(err)
					return
				}
				var out struct{ ID string }
				json.NewDecoder(resp.Body).Decode(&out)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					t.Errorf("POST %s: %s", body, resp.Status)
					return
				}
				mu.Lock()
				acked = append(acked, out.ID)
				mu.Unlock()
			}
		}()
	}
	wg.Wait()
	if len(acked) != 200 {
		t.Fatalf("%d registrations acknowledged, want 200", len(acked))
	}
	a.cmd.Process.Signal(syscall.SIGKILL)
	a.waitExit(t, 10*time.Second)

	b := startServeOn(t, a.data)
	resp, err := http.Get("http://" + b.web + "/api/services")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	have := map[string]bool{}
	for _, s := range list {
		have[s.ID] = true
	}
	for _, id := range acked {
		if !have[id] {
			t.Errorf("acknowledged %s is gone after kill -9", id)
		}
	}
	if _, err := exec.LookPath("dig"); err == nil {
		out := dig(t, b.dns, "+short", "_svc199._tcp.svc.internal.", "SRV")
		if !strings.Contains(out, "10199") {
			t.Errorf("_svc199._tcp not in DNS after restart: %q", out)
		}
	}
}
