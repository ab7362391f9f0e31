// Package lab holds the course's programs in Python: serveur_iteratif.py,
// serveur_concurrent.py, client.py, client_select.py and the module they
// share, annuaire.py (see README.md). These tests run them with the
// system's python3 against a real "annuaire serve", as a student would,
// and look at the outcome with independent tools: dig, the HTTP API,
// /proc, and dnspython for the hand-written DNS parser.
package lab_test

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/internal/testenv"
)

// annuaireBin is the annuaire command, built once for every test.
var annuaireBin string

func TestMain(m *testing.M) {
	dir, err := os.MkdirTemp("", "lab-test-")
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	annuaireBin = filepath.Join(dir, "annuaire")
	if runtime.GOOS == "windows" {
		annuaireBin += ".exe"
	}
	// go test puts its own go first in PATH.
	if out, err := exec.Command("go", "build", "-o", annuaireBin, "github.com/annuaire/annuaire/cmd/annuaire").CombinedOutput(); err != nil {
		fmt.Fprintf(os.Stderr, "building annuaire: %v\n%s", err, out)
		os.RemoveAll(dir)
		os.Exit(1)
	}
	code := m.Run()
	os.RemoveAll(dir)
	os.Exit(code)
}

// output is a file a child writes to. A file rather than a pipe: the
// concurrent server's exécutants inherit it, and a pipe would keep Wait
// waiting until the last of them ends, long after the veilleur.
type output struct{ f *os.File }

func newOutput(t *testing.T) output {
	f, err := os.CreateTemp(t.TempDir(), "out")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { f.Close() })
	return output{f}
}

func (o output) String() string {
	b, _ := os.ReadFile(o.f.Name())
	return string(b)
}

// process is a running child: annuaire or a lab program.
type process struct {
	name           string
	cmd            *exec.Cmd
	stdout, stderr output
	done           chan struct{}
	err            error // set when done is closed
}

func start(t *testing.T, cmd *exec.Cmd) *process {
	t.Helper()
	p := &process{name: filepath.Base(cmd.Args[0]), cmd: cmd, stdout: newOutput(t), stderr: newOutput(t), done: make(chan struct{})}
	for _, a := range cmd.Args[1:] {
		if strings.HasSuffix(a, ".py") || a == "serve" {
			p.name = a
			break
		}
	}
	cmd.Stdout, cmd.Stderr = p.stdout.f, p.stderr.f
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() { p.err = cmd.Wait(); close(p.done) }()
	t.Cleanup(func() {
		cmd.Process.Kill()
		<-p.done
		if t.Failed() {
			t.Logf("%s stdout:\n%s\n%s stderr:\n%s", p.name, p.stdout, p.name, p.stderr)
		}
	})
	return p
}

// waitFor waits until re matches the process's stdout and returns the
// submatches.
func (p *process) waitFor(t *testing.T, re *regexp.Regexp) []string {
	t.Helper()
	deadline := time.Now().Add(20 * time.Second)
	for {
		if m := re.FindStringSubmatch(p.stdout.String()); m != nil {
			return m
		}
		select {
		case <-p.done:
			if m := re.FindStringSubmatch(p.stdout.String()); m != nil {
				return m
			}
			t.Fatalf("%s exited (%v) before printing %q:\n%s%s", p.name, p.err, re, p.stdout, p.stderr)
		case <-time.After(20 * time.Millisecond):
		}
		if time.Now().After(deadline) {
			t.Fatalf("%s did not print %q:\n%s%s", p.name, re, p.stdout, p.stderr)
		}
	}
}

// exitCode waits for the process to end and returns its exit code.
func (p *process) exitCode(t *testing.T) int {
	t.Helper()
	select {
	case <-p.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("%s still running after 20s:\n%s%s", p.name, p.stdout, p.stderr)
	}
	if ee, ok := p.err.(*exec.ExitError); ok {
		return ee.ExitCode()
	}
	if p.err != nil {
		t.Fatal(p.err)
	}
	return 0
}

// directory is a running "annuaire serve" on :0 ports, with its data
// directory where the lab programs look for the token by default
// ($XDG_STATE_HOME/annuaire).
type directory struct {
	dns, web, data, state, token string
}

var (
	reDNS = regexp.MustCompile(`(?m)^dns\s+\S+ served on (\S+) `)
	reWeb = regexp.MustCompile(`(?m)^web\s+http://(\S+)/`)
)

func startAnnuaire(t *testing.T, extra ...string) *directory {
	t.Helper()
	d := &directory{state: t.TempDir()}
	d.data = filepath.Join(d.state, "annuaire")
	args := append([]string{"serve", "--data", d.data, "--dns", "127.0.0.1:0", "--web", "127.0.0.1:0",
		"--echo", "", "--mail", "", "--telnet", "", "--daytime", "", "--discard", "", "--hostname", "box"}, extra...)
	p := start(t, exec.Command(annuaireBin, args...))
	p.waitFor(t, reWeb)
	out := p.stdout.String()
	d.dns = reDNS.FindStringSubmatch(out)[1]
	d.web = reWeb.FindStringSubmatch(out)[1]
	tok, err := os.ReadFile(filepath.Join(d.data, "token"))
	if err != nil {
		t.Fatal(err)
	}
	d.token = strings.TrimSpace(string(tok))
	return d
}

// env is the environment of a lab program: annuaire found through
// ANNUAIRE_SERVER and ANNUAIRE_WEB, and its token through the default
// token file; extra entries override.
func (d *directory) env(extra ...string) []string {
	var env []string
	for _, kv := range os.Environ() {
		if !strings.HasPrefix(kv, "ANNUAIRE_") && !strings.HasPrefix(kv, "XDG_STATE_HOME=") {
			env = append(env, kv)
		}
	}
	// No __pycache__ written into the source tree.
	env = append(env, "PYTHONDONTWRITEBYTECODE=1", "ANNUAIRE_SERVER="+d.dns, "ANNUAIRE_WEB="+d.web, "XDG_STATE_HOME="+d.state)
	return append(env, extra...)
}

var interpreters sync.Map // testenv.Python's answer → the interpreter itself

// interpreter returns testenv.Python(t, modules...), resolved to the
// interpreter itself: python3 may be a pyenv shim, a shell script that
// takes seconds to start on a loaded machine.
func interpreter(t *testing.T, modules ...string) string {
	t.Helper()
	py := testenv.Python(t, modules...)
	if real, ok := interpreters.Load(py); ok {
		return real.(string)
	}
	out, err := exec.Command(py, "-c", "import sys; print(sys.executable)").Output()
	real := strings.TrimSpace(string(out))
	if err != nil || real == "" {
		real = py
	}
	interpreters.Store(py, real)
	return real
}

// python runs a lab program with the system's python3, standard library only.
func python(t *testing.T, env []string, stdin io.Reader, script string, args ...string) *exec.Cmd {
	t.Helper()
	cmd := exec.Command(interpreter(t), append([]string{script}, args...)...)
	cmd.Env, cmd.Stdin = env, stdin
	return cmd
}

// reRegistered matches a server's line "registered NAME: SRV → endpoints (id ID)".
var reRegistered = regexp.MustCompile(`(?m)^registered (\S+): (\S+) SRV (\d+) (\d+) (\d+) (\S+) → (\S+) \(id (\S+)\)$`)

// server is a running serveur_iteratif.py or serveur_concurrent.py.
type server struct {
	*process
	port     string
	endpoint string // as registered
	id       string
}

func startServer(t *testing.T, env []string, script string, args ...string) *server {
	t.Helper()
	p := start(t, python(t, env, nil, script, args...))
	m := p.waitFor(t, reRegistered)
	return &server{process: p, port: m[5], endpoint: m[7], id: m[8]}
}

func dig(t *testing.T, server string, args ...string) string {
	t.Helper()
	host, port, _ := net.SplitHostPort(server)
	all := append([]string{"@" + host, "-p", port, "+norec", "+time=2", "+tries=1"}, args...)
	out, err := exec.Command(testenv.NeedTool(t, "dig"), all...).CombinedOutput()
	if err != nil {
		t.Fatalf("dig %v: %v\n%s", all, err, out)
	}
	return string(out)
}

// srvAnswer returns dig's status and SRV answer line for _NAME._tcp.
func srvAnswer(t *testing.T, d *directory, name string) (status, answer string) {
	t.Helper()
	out := dig(t, d.dns, "+noall", "+comments", "+answer", "_"+name+"._tcp.svc.internal.", "SRV")
	if m := regexp.MustCompile(`status: (\w+)`).FindStringSubmatch(out); m != nil {
		status = m[1]
	}
	for _, line := range strings.Split(out, "\n") {
		// dig separates its columns with tabs or, after a long name, spaces.
		if f := strings.Fields(line); len(f) > 4 && f[3] == "SRV" && !strings.HasPrefix(line, ";") {
			answer = strings.Join(f, " ")
		}
	}
	return status, answer
}

// eventually polls cond until it holds, for at most within.
func eventually(t *testing.T, within time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(within)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("after %v: %s", within, what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

// apiService returns an instance's status code and health from the API.
func apiService(t *testing.T, d *directory, id string) (int, string) {
	t.Helper()
	resp, err := http.Get("http://" + d.web + "/api/services/" + id)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var v struct{ Health string }
	json.NewDecoder(resp.Body).Decode(&v)
	return resp.StatusCode, v.Health
}

// apiRegister registers an instance as any program may.
func apiRegister(t *testing.T, d *directory, body string) {
	t.Helper()
	req, _ := http.NewRequest("POST", "http://"+d.web+"/api/services", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+d.token)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		b, _ := io.ReadAll(resp.Body)
		t.Fatalf("register %s: %s\n%s", body, resp.Status, b)
	}
}

func echoOnce(t *testing.T, c net.Conn, line string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, line); err != nil {
		t.Fatal(err)
	}
	got := make([]byte, len(line))
	if _, err := io.ReadFull(c, got); err != nil || string(got) != line {
		t.Fatalf("echo of %q: %q, %v", line, got, err)
	}
}

// The chain, the echo, and the trace in the format of "annuaire dial --trace".
func TestIterativeRegisteredResolvedEchoed(t *testing.T) {
	t.Parallel()
	d := startAnnuaire(t)
	srv := startServer(t, d.env(), "serveur_iteratif.py", "echo-alice", "0")

	// What dig sees: the port the system chose, and the address.
	status, answer := srvAnswer(t, d, "echo-alice")
	want := "_echo-alice._tcp.svc.internal. 10 IN SRV 0 0 " + srv.port + " h-127-0-0-1.svc.internal."
	if status != "NOERROR" || answer != want || srv.endpoint != "127.0.0.1:"+srv.port {
		t.Fatalf("dig: %s %q, want %q; registered %s", status, answer, want, srv.endpoint)
	}

	// client.py finds it by name and gets its echo.
	cl := python(t, d.env(), strings.NewReader("bonjour\nau revoir\n"), "client.py", "echo-alice")
	var stderr bytes.Buffer
	cl.Stderr = &stderr
	out, err := cl.Output()
	if err != nil || string(out) != "bonjour\nau revoir\n" {
		t.Fatalf("client.py: %q, %v\n%s", out, err, &stderr)
	}

	// Its trace is annuaire dial --trace's, line for line, but for times
	// and the client's own port.
	dial := exec.Command(annuaireBin, "dial", "--trace", "--server", d.dns, "echo-alice")
	dial.Stdin = strings.NewReader("bonjour\nau revoir\n")
	var dialErr bytes.Buffer
	dial.Stderr = &dialErr
	if out, err := dial.Output(); err != nil || string(out) != "bonjour\nau revoir\n" {
		t.Fatalf("annuaire dial: %q, %v\n%s", out, err, &dialErr)
	}
	norm := func(s string) string {
		s = regexp.MustCompile(`\d+(\.\d+)?(µs|ms|s)\b`).ReplaceAllString(s, "D")
		return regexp.MustCompile(`:(\d+)\b`).ReplaceAllStringFunc(s, func(p string) string {
			if p == ":"+srv.port || p == d.dns[strings.LastIndex(d.dns, ":"):] {
				return p
			}
			return ":L"
		})
	}
	if got, want := norm(stderr.String()), norm(dialErr.String()); got != want {
		t.Errorf("client.py's trace:\n%s\nannuaire dial --trace's:\n%s", got, want)
	}
	if !regexp.MustCompile(`(?m)^  address    h-127-0-0-1\.svc\.internal\. A → 127\.0\.0\.1   \(at \+[^,]+, ttl 10, no query: the address came in the answer's additional section\)$`).MatchString(stderr.String()) {
		t.Errorf("trace:\n%s", &stderr)
	}
	srv.waitFor(t, regexp.MustCompile(`(?m)^127\.0\.0\.1:\d+: closed, 18 bytes echoed$`))

	t.Run("one client at a time", func(t *testing.T) {
		first, err := net.Dial("tcp", srv.endpoint)
		if err != nil {
			t.Fatal(err)
		}
		echoOnce(t, first, "premier\n")
		second, err := net.Dial("tcp", srv.endpoint) // waits in the listen queue
		if err != nil {
			t.Fatal(err)
		}
		defer second.Close()
		io.WriteString(second, "second\n")
		second.SetReadDeadline(time.Now().Add(300 * time.Millisecond))
		if n, err := second.Read(make([]byte, 16)); n != 0 || !os.IsTimeout(err) {
			t.Fatalf("the second client was served while the first was: %d bytes, %v", n, err)
		}
		first.Close()
		second.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := bufio.NewReader(second).ReadString('\n')
		if got != "second\n" {
			t.Fatalf("second client after the first left: %q, %v", got, err)
		}
	})

	t.Run("a client kept waiting is told why", func(t *testing.T) {
		first, err := net.Dial("tcp", srv.endpoint)
		if err != nil {
			t.Fatal(err)
		}
		defer first.Close()
		echoOnce(t, first, "premier\n")
		p := start(t, python(t, d.env(), strings.NewReader("second\n"), "client.py", "echo-alice"))
		eventually(t, 10*time.Second, "no waiting line", func() bool {
			return strings.Contains(p.stderr.String(), "waiting: connected, no byte from "+srv.endpoint+" yet after ")
		})
		first.Close()
		if code := p.exitCode(t); code != 0 || p.stdout.String() != "second\n" {
			t.Fatalf("exit %d, stdout %q\n%s", code, p.stdout, p.stderr)
		}
		if !strings.Contains(p.stderr.String(), "(sent 7 bytes): the server may be serving another client;\n  if so, the kernel completed the handshake and queued this connection (the listen backlog), where it waits until the server accepts it\nfirst byte from "+srv.endpoint+" after ") {
			t.Errorf("stderr:\n%s", p.stderr)
		}
	})

	t.Run("unknown name", func(t *testing.T) {
		cl := python(t, d.env(), strings.NewReader(""), "client.py", "nosuch")
		out, err := cl.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
			t.Fatalf("exit: %v\n%s", err, out)
		}
		for _, want := range []string{
			"  srv        _nosuch._tcp.svc.internal. SRV → NXDOMAIN   (" + d.dns + ", ",
			"nosuch → failed: not a well-known service either: no such service\n",
		} {
			if !strings.Contains(string(out), want) {
				t.Errorf("missing %q in:\n%s", want, out)
			}
		}
	})
}

// Ctrl-C (SIGINT) and kill (SIGTERM) stop either server cleanly: it
// deregisters, so the name leaves DNS, and exits 0.
func TestCleanStopDeregisters(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("no SIGTERM to send on Windows")
	}
	d := startAnnuaire(t)
	for _, script := range []string{"serveur_iteratif.py", "serveur_concurrent.py"} {
		for _, sig := range []syscall.Signal{syscall.SIGINT, syscall.SIGTERM} {
			t.Run(script+"/"+sig.String(), func(t *testing.T) {
				// At most 15 characters (RFC 6335 section 5.1): stop-iter-2.
				name := "stop-" + script[len("serveur_"):len("serveur_")+4] + "-" + strconv.Itoa(int(sig))
				srv := startServer(t, d.env(), script, name, "0")
				if status, answer := srvAnswer(t, d, name); status != "NOERROR" || !strings.Contains(answer, " "+srv.port+" ") {
					t.Fatalf("before: dig %s %q", status, answer)
				}
				c, err := net.Dial("tcp", srv.endpoint) // a client being served does not hold the stop back
				if err != nil {
					t.Fatal(err)
				}
				defer c.Close()
				echoOnce(t, c, "bonjour\n")
				srv.cmd.Process.Signal(sig)
				if code := srv.exitCode(t); code != 0 {
					t.Fatalf("exit code %d", code)
				}
				if !strings.Contains(srv.stdout.String(), "deregistered "+name+": _"+name+"._tcp.svc.internal. leaves DNS\n") {
					t.Errorf("stdout:\n%s", srv.stdout)
				}
				if status, answer := srvAnswer(t, d, name); status != "NXDOMAIN" {
					t.Errorf("after: dig %s %q, want NXDOMAIN", status, answer)
				}
				if code, _ := apiService(t, d, srv.id); code != http.StatusNotFound {
					t.Errorf("after: GET /api/services/%s: %d", srv.id, code)
				}
			})
		}
	}
}

// Heartbeats keep a server in DNS, also while it serves a client for
// longer than the check's interval; a server killed without a chance to
// deregister leaves DNS when they stop.
func TestHeartbeats(t *testing.T) {
	t.Parallel()
	d := startAnnuaire(t)
	for _, script := range []string{"serveur_iteratif.py", "serveur_concurrent.py"} {
		t.Run(script, func(t *testing.T) {
			if script == "serveur_concurrent.py" && runtime.GOOS == "windows" {
				t.Skip("no fork on Windows")
			}
			name := "beat-" + script[len("serveur_"):len("serveur_")+4]
			srv := startServer(t, d.env(), script, name, "0", "--check-interval", "1")
			c, err := net.Dial("tcp", srv.endpoint)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			echoOnce(t, c, "je reste\n")
			time.Sleep(3500 * time.Millisecond) // 3.5 intervals, the client still connected
			if code, health := apiService(t, d, srv.id); code != 200 || health != "passing" {
				t.Fatalf("after 3.5 intervals: %d %q, want passing", code, health)
			}
			if status, answer := srvAnswer(t, d, name); answer == "" {
				t.Fatalf("after 3.5 intervals: dig %s, no SRV", status)
			}
			srv.cmd.Process.Kill()
			srv.exitCode(t)
			eventually(t, 10*time.Second, "the killed server is still in DNS", func() bool {
				status, answer := srvAnswer(t, d, name)
				return status == "NOERROR" && answer == ""
			})
			if _, health := apiService(t, d, srv.id); health != "critical" {
				t.Errorf("health %q, want critical", health)
			}
		})
	}
}

// procInfo is what /proc/PID/stat says of a process.
type procInfo struct {
	pid, ppid int
	state     string
}

// children lists pid's children, zombies included, from /proc.
func children(t *testing.T, pid int) []procInfo {
	t.Helper()
	stats, _ := filepath.Glob("/proc/[0-9]*/stat")
	var out []procInfo
	for _, f := range stats {
		b, err := os.ReadFile(f)
		if err != nil {
			continue // gone meanwhile
		}
		// pid (comm) state ppid ...; comm may hold spaces and parentheses.
		s := string(b)
		i := strings.LastIndexByte(s, ')')
		fields := strings.Fields(s[i+1:])
		if len(fields) < 2 {
			continue
		}
		ppid, _ := strconv.Atoi(fields[1])
		if ppid == pid {
			p, _ := strconv.Atoi(strings.Fields(s)[0])
			out = append(out, procInfo{pid: p, ppid: ppid, state: fields[0]})
		}
	}
	return out
}

// socketInodes returns the inodes of the sockets a process holds.
func socketInodes(pid int) map[string]bool {
	fds, _ := filepath.Glob(fmt.Sprintf("/proc/%d/fd/*", pid))
	out := map[string]bool{}
	for _, fd := range fds {
		if l, err := os.Readlink(fd); err == nil && strings.HasPrefix(l, "socket:[") {
			out[strings.TrimSuffix(strings.TrimPrefix(l, "socket:["), "]")] = true
		}
	}
	return out
}

// tcpSockets returns the inodes of the IPv4 TCP sockets on a local port:
// the listening one and the established ones (/proc/net/tcp).
func tcpSockets(t *testing.T, port int) (listen string, established []string) {
	t.Helper()
	b, err := os.ReadFile("/proc/net/tcp")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(b), "\n")[1:] {
		f := strings.Fields(line)
		if len(f) < 10 {
			continue
		}
		p, _ := strconv.ParseInt(f[1][strings.IndexByte(f[1], ':')+1:], 16, 32)
		if int(p) != port {
			continue
		}
		switch f[3] {
		case "0A":
			listen = f[9]
		case "01":
			established = append(established, f[9])
		}
	}
	return listen, established
}

// The veilleur forks one exécutant per client, each holding only its
// connection, and reaps them all when they end: no zombie is left.
func TestConcurrentForksAndReaps(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("reads /proc")
	}
	d := startAnnuaire(t)
	srv := startServer(t, d.env(), "serveur_concurrent.py", "echo-bob", "0")
	veilleur := srv.cmd.Process.Pid
	port, _ := strconv.Atoi(srv.port)

	// Five clients at once, each served while the others stay connected:
	// an iterative server would serve the first one only.
	var conns []net.Conn
	for i := range 5 {
		c, err := net.Dial("tcp", srv.endpoint)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		echoOnce(t, c, fmt.Sprintf("client %d\n", i))
		conns = append(conns, c)
	}
	kids := children(t, veilleur)
	if len(kids) != 5 {
		t.Fatalf("%d exécutants, want 5: %v", len(kids), kids)
	}

	// Who holds what: the exécutants closed the listening socket, the
	// veilleur closed the connections.
	listen, established := tcpSockets(t, port)
	if listen == "" || len(established) != 5 {
		t.Fatalf("/proc/net/tcp: listening %q, %d established", listen, len(established))
	}
	// The veilleur closes its copy of a connection once fork() returns in
	// it, which may come after its exécutant has already answered.
	eventually(t, 10*time.Second, "the veilleur still holds a connection", func() bool {
		mine := socketInodes(veilleur)
		for _, ino := range established {
			if mine[ino] {
				return false
			}
		}
		return true
	})
	if !socketInodes(veilleur)[listen] {
		t.Errorf("the veilleur does not hold the listening socket")
	}
	held := map[string]int{}
	for _, k := range kids {
		socks := socketInodes(k.pid)
		if socks[listen] {
			t.Errorf("exécutant %d still holds the listening socket", k.pid)
		}
		for ino := range socks {
			held[ino]++
		}
	}
	for _, ino := range established {
		if held[ino] != 1 {
			t.Errorf("connection %s held by %d exécutants, want 1", ino, held[ino])
		}
	}

	for _, c := range conns {
		c.Close()
	}
	eventually(t, 10*time.Second, "exécutants left behind (zombies not reaped?)", func() bool {
		return len(children(t, veilleur)) == 0
	})
	srv.waitFor(t, regexp.MustCompile(`(?s)(veilleur: exécutant \d+ reaped \(exit 0\)\n.*){5}`))

	t.Run("the zombie detector sees an unreaped child", func(t *testing.T) {
		// A parent that never waits: its ended child must show as Z, or
		// the check above would prove nothing.
		p := start(t, exec.Command(interpreter(t), "-c",
			"import os, time\nif os.fork() == 0:\n    os._exit(0)\nprint('forked', flush=True)\ntime.sleep(30)"))
		p.waitFor(t, regexp.MustCompile("forked"))
		eventually(t, 5*time.Second, "no zombie child seen", func() bool {
			kids := children(t, p.cmd.Process.Pid)
			return len(kids) == 1 && kids[0].state == "Z"
		})
	})
}

// bavard is a server that speaks first: a greeting at connection, then an
// echo, and a goodbye at the end of the client's stream.
func bavard(t *testing.T) net.Listener {
	return testenv.ServeTCP(t, func(c net.Conn) {
		io.WriteString(c, "bonjour du serveur\n")
		io.Copy(c, c)
		io.WriteString(c, "au revoir\n")
	})
}

// client_select.py prints what the server sends while stdin is silent,
// and echoes lines that arrive together.
func TestSelectClient(t *testing.T) {
	t.Parallel()
	if runtime.GOOS == "windows" {
		t.Skip("select on stdin: Unix only")
	}
	d := startAnnuaire(t)
	ln := bavard(t)
	apiRegister(t, d, fmt.Sprintf(`{"name":"bavard","port":%d,"addresses":["127.0.0.1"]}`, ln.Addr().(*net.TCPAddr).Port))

	cmd := python(t, d.env(), nil, "client_select.py", "bavard")
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	p := start(t, cmd)
	// Nothing typed yet: the greeting shows all the same.
	p.waitFor(t, regexp.MustCompile(`^bonjour du serveur\n$`))
	io.WriteString(stdin, "ligne 1\n")
	p.waitFor(t, regexp.MustCompile(`ligne 1\n$`))
	// Three lines in one write: read with readline, two would stay in
	// Python's buffer, unseen by select, until more input came.
	io.WriteString(stdin, "ligne 2\nligne 3\nligne 4\n")
	p.waitFor(t, regexp.MustCompile(`ligne 4\n$`))
	stdin.Close() // end of stdin: the client half-closes, the server says goodbye
	if code := p.exitCode(t); code != 0 {
		t.Fatalf("exit code %d", code)
	}
	if got, want := p.stdout.String(), "bonjour du serveur\nligne 1\nligne 2\nligne 3\nligne 4\nau revoir\n"; got != want {
		t.Errorf("stdout %q, want %q", got, want)
	}
	if !strings.Contains(p.stderr.String(), "closed after ") || !strings.Contains(p.stderr.String(), ": sent 32 bytes, received 61 bytes\n") {
		t.Errorf("stderr:\n%s", p.stderr)
	}

	t.Run("client.py on the same server", func(t *testing.T) {
		// client.py waits for an echo as long as each line: the greeting
		// comes instead, and the rest in order.
		cl := python(t, d.env(), strings.NewReader("un\n"), "client.py", "bavard")
		out, err := cl.Output()
		if err != nil || string(out) != "bonjour du serveur\nun\nau revoir\n" {
			t.Fatalf("%q, %v", out, err)
		}
	})
}

// With --bind the server registers the address it listens on; a client
// on another (loopback) address reaches it by name.
func TestBindAndSource(t *testing.T) {
	t.Parallel()
	if runtime.GOOS != "linux" {
		t.Skip("127.0.0.2 and 127.0.0.3 are usable without setup on Linux only")
	}
	d := startAnnuaire(t)
	srv := startServer(t, d.env(), "serveur_iteratif.py", "echo-alice", "0", "--bind", "127.0.0.2")
	if srv.endpoint != "127.0.0.2:"+srv.port {
		t.Fatalf("registered %s", srv.endpoint)
	}
	out := dig(t, d.dns, "+noall", "+answer", "+additional", "_echo-alice._tcp.svc.internal.", "SRV")
	if !strings.Contains(out, "SRV\t0 0 "+srv.port+" h-127-0-0-2.svc.internal.") || !strings.Contains(out, "h-127-0-0-2.svc.internal. 10\tIN\tA\t127.0.0.2") {
		t.Fatalf("dig:\n%s", out)
	}
	if _, err := net.DialTimeout("tcp", "127.0.0.1:"+srv.port, time.Second); err == nil {
		t.Errorf("the server bound to 127.0.0.2 answers on 127.0.0.1 too")
	}

	cl := python(t, d.env(), strings.NewReader("de bob\n"), "client.py", "echo-alice", "--source", "127.0.0.3")
	var stderr bytes.Buffer
	cl.Stderr = &stderr
	got, err := cl.Output()
	if err != nil || string(got) != "de bob\n" {
		t.Fatalf("client.py: %q, %v\n%s", got, err, &stderr)
	}
	if !regexp.MustCompile(`connect    127\.0\.0\.2:` + srv.port + ` → 127\.0\.0\.3:\d+ → 127\.0\.0\.2:` + srv.port).MatchString(stderr.String()) {
		t.Errorf("trace:\n%s", &stderr)
	}
	srv.waitFor(t, regexp.MustCompile(`(?m)^accept: connection from 127\.0\.0\.3:\d+$`))

	t.Run("every interface", func(t *testing.T) {
		// bind(("", port)): the address registered is the one that leads
		// to annuaire's web API, here 127.0.0.1.
		any := startServer(t, d.env(), "serveur_concurrent.py", "echo-any", "0")
		if any.endpoint != "127.0.0.1:"+any.port {
			t.Errorf("registered %s", any.endpoint)
		}
		adv := startServer(t, d.env(), "serveur_iteratif.py", "echo-adv", "0", "--advertise", "127.0.0.4")
		if adv.endpoint != "127.0.0.4:"+adv.port {
			t.Errorf("with --advertise: registered %s", adv.endpoint)
		}
	})
}

// client.py tries the SRV targets in the order of RFC 2782 and moves on
// from one that refuses.
func TestClientFailover(t *testing.T) {
	t.Parallel()
	d := startAnnuaire(t)
	dead, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	deadPort := dead.Addr().(*net.TCPAddr).Port
	dead.Close()
	live := bavard(t)
	livePort := live.Addr().(*net.TCPAddr).Port
	apiRegister(t, d, fmt.Sprintf(`{"name":"double","port":%d,"addresses":["127.0.0.1"],"priority":0}`, deadPort))
	apiRegister(t, d, fmt.Sprintf(`{"name":"double","port":%d,"addresses":["127.0.0.1"],"priority":1}`, livePort))
	cl := python(t, d.env(), strings.NewReader(""), "client.py", "double")
	var stderr bytes.Buffer
	cl.Stderr = &stderr
	out, err := cl.Output()
	if err != nil || string(out) != "bonjour du serveur\nau revoir\n" {
		t.Fatalf("%q, %v\n%s", out, err, &stderr)
	}
	for _, want := range []string{
		fmt.Sprintf("  candidates, in the order a dial tries them: 127.0.0.1:%d 127.0.0.1:%d\n", deadPort, livePort),
		fmt.Sprintf("  connect    127.0.0.1:%d → connect 127.0.0.1:%d: connection refused", deadPort, deadPort),
		fmt.Sprintf("→ 127.0.0.1:%d\nconnected: ", livePort),
	} {
		if !strings.Contains(stderr.String(), want) {
			t.Errorf("missing %q in:\n%s", want, &stderr)
		}
	}
}

// startLiar serves handle on 127.0.0.1 over UDP and TCP on one port: a DNS
// server scripted to say what annuaire never would.
func startLiar(t *testing.T, handle func(req *dns.Msg) (answer, extra []string)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	pc, err := net.ListenPacket("udp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	h := dns.HandlerFunc(func(w dns.ResponseWriter, req *dns.Msg) {
		m := new(dns.Msg)
		m.SetReply(req)
		m.Authoritative = true
		answer, extra := handle(req)
		for _, list := range []struct {
			rrs []string
			to  *[]dns.RR
		}{{answer, &m.Answer}, {extra, &m.Extra}} {
			for _, text := range list.rrs {
				rr, err := dns.NewRR(text)
				if err != nil {
					panic(err)
				}
				*list.to = append(*list.to, rr)
			}
		}
		w.WriteMsg(m)
	})
	for _, srv := range []*dns.Server{{PacketConn: pc, Handler: h}, {Listener: ln, Handler: h}} {
		started := make(chan struct{})
		srv.NotifyStartedFunc = func() { close(started) }
		go srv.ActivateAndServe()
		<-started
		t.Cleanup(func() { srv.Shutdown() })
	}
	return pc.LocalAddr().String()
}

// client.py believes only what answers its question, as the Go client
// does, and says what it set aside in the same words: an SRV target on
// port 0, addresses of a host outside the zone in the additional
// section, records of a name it did not ask about.
func TestClientDistrustsLiars(t *testing.T) {
	t.Parallel()
	live := bavard(t)
	port := live.Addr().(*net.TCPAddr).Port
	liar := startLiar(t, func(req *dns.Msg) (answer, extra []string) {
		q := req.Question[0]
		switch {
		case q.Name == "_liar._tcp.svc.internal." && q.Qtype == dns.TypeSRV:
			return []string{"_liar._tcp.svc.internal. 10 IN SRV 0 0 0 zero.svc.internal.",
					fmt.Sprintf("_liar._tcp.svc.internal. 10 IN SRV 1 0 %d far.example.", port)},
				[]string{"far.example. 10 IN A 192.0.2.1"}
		case q.Name == "far.example." && q.Qtype == dns.TypeA:
			return []string{"far.example. 10 IN A 127.0.0.1"}, nil
		case q.Name == "_other._tcp.svc.internal." && q.Qtype == dns.TypeSRV:
			return []string{fmt.Sprintf("_evil._tcp.svc.internal. 10 IN SRV 0 0 %d far.example.", port)}, nil
		}
		return nil, nil
	})
	d := &directory{dns: liar, web: "127.0.0.1:9", state: t.TempDir()}
	norm := func(s string) string {
		s = regexp.MustCompile(`\d+(\.\d+)?(µs|ms|s)\b`).ReplaceAllString(s, "D")
		return regexp.MustCompile(`127\.0\.0\.1:\d+ →`).ReplaceAllString(s, "127.0.0.1:L →")
	}
	for _, tc := range []struct {
		name, want string
		code       int
	}{
		{"liar", "bonjour du serveur\nau revoir\n", 0},
		{"other", "", 1},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cl := python(t, d.env(), strings.NewReader(""), "client.py", tc.name)
			var stderr bytes.Buffer
			cl.Stderr = &stderr
			out, err := cl.Output()
			if code := cl.ProcessState.ExitCode(); code != tc.code || string(out) != tc.want {
				t.Fatalf("exit %d (%v), stdout %q\n%s", code, err, out, &stderr)
			}
			dial := exec.Command(annuaireBin, "dial", "--trace", "--server", liar, tc.name)
			var dialErr bytes.Buffer
			dial.Stdin, dial.Stderr = strings.NewReader(""), &dialErr
			dial.Run()
			// The Go command ends a failure with an error line of its own.
			want := strings.TrimSuffix(norm(dialErr.String()), "\n")
			if i := strings.LastIndex(want, "\nannuaire: "); i >= 0 {
				want = want[:i]
			}
			if got := strings.TrimSuffix(norm(stderr.String()), "\n"); got != want {
				t.Errorf("client.py's trace:\n%s\nannuaire dial --trace's:\n%s", got, want)
			}
		})
	}
}

// Every program finds annuaire as the CLI does: flags, then ANNUAIRE_*,
// then the defaults; the token from --token, ANNUAIRE_TOKEN, --data or
// the default token file.
func TestOptionsAndEnvironment(t *testing.T) {
	t.Parallel()
	d := startAnnuaire(t)
	empty := t.TempDir() // an XDG_STATE_HOME without a token file
	deadAddr := func() string {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		ln.Close()
		return ln.Addr().String()
	}()
	// Wrong environment everywhere: the flags must win.
	wrongEnv := d.env("ANNUAIRE_SERVER="+deadAddr, "ANNUAIRE_WEB="+deadAddr, "XDG_STATE_HOME="+empty)

	for _, tc := range []struct {
		name, service string
		env           []string
		args          []string
	}{
		{"flags", "opt-flags", wrongEnv, []string{"--dns", d.dns, "--web", d.web, "--token", d.token}},
		{"ANNUAIRE_TOKEN", "opt-env", d.env("XDG_STATE_HOME="+empty, "ANNUAIRE_TOKEN="+d.token), nil},
		{"--data", "opt-data", d.env("XDG_STATE_HOME=" + empty), []string{"--data", d.data}},
		{"default token file", "opt-file", d.env(), nil},
	} {
		t.Run(tc.name, func(t *testing.T) {
			name := tc.service
			srv := startServer(t, tc.env, "serveur_iteratif.py", append([]string{name, "0"}, tc.args...)...)
			args := append([]string{name}, tc.args...)
			cl := python(t, tc.env, strings.NewReader("ok\n"), "client.py", args...)
			if out, err := cl.CombinedOutput(); err != nil || !strings.HasPrefix(string(out), "ok\n") && !strings.Contains(string(out), "\nok\n") {
				t.Fatalf("client.py: %v\n%s", err, out)
			}
			srv.cmd.Process.Signal(os.Interrupt)
			if code := srv.exitCode(t); code != 0 {
				t.Errorf("exit code %d", code)
			}
		})
	}

	for _, tc := range []struct {
		name string
		env  []string
		args []string
		code int
		want string
	}{
		{"wrong token", d.env(), []string{"--token", "nope"}, 1, "POST /api/services: wrong token (HTTP 401)"},
		{"no token", d.env("XDG_STATE_HOME=" + empty), nil, 1, "no API token: pass --token, set ANNUAIRE_TOKEN, or point --data at the server's state directory"},
		{"API unreachable", d.env("ANNUAIRE_WEB=" + deadAddr), nil, 1, "cannot reach annuaire's API at http://" + deadAddr},
		{"IPv6 bind", d.env(), []string{"--bind", "::1"}, 2, "--bind '::1': an IPv4 address"},
		{"bad port", d.env(), []string{"--", "-1"}, 2, "is not a port number"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			args := append([]string{"serveur_iteratif.py", "opt-fail"}, tc.args...)
			if tc.name != "bad port" {
				args = append(args, "0")
			}
			cmd := python(t, tc.env, nil, args[0], args[1:]...)
			out, err := cmd.CombinedOutput()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != tc.code || !strings.Contains(string(out), tc.want) {
				t.Errorf("%v, want exit %d and %q:\n%s", err, tc.code, tc.want, out)
			}
		})
	}

	t.Run("port in use", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		port := strconv.Itoa(ln.Addr().(*net.TCPAddr).Port)
		out, err := python(t, d.env(), nil, "serveur_iteratif.py", "opt-busy", port, "--bind", "127.0.0.1").CombinedOutput()
		if want := "serveur_iteratif.py: bind 127.0.0.1:" + port + ": address already in use\n"; err == nil || string(out) != want {
			t.Errorf("%v\n%q, want %q", err, out, want)
		}
	})

	t.Run("ANNUAIRE_ZONE", func(t *testing.T) {
		z := startAnnuaire(t, "--zone", "lab.test")
		env := z.env("ANNUAIRE_ZONE=lab.test")
		startServer(t, env, "serveur_iteratif.py", "echo-zone", "0")
		cl := python(t, env, strings.NewReader("zone\n"), "client.py", "echo-zone")
		var stderr bytes.Buffer
		cl.Stderr = &stderr
		out, err := cl.Output()
		if err != nil || string(out) != "zone\n" || !strings.HasPrefix(stderr.String(), "echo-zone: service echo-zone over tcp in zone lab.test.\n") {
			t.Fatalf("%q, %v\n%s", out, err, &stderr)
		}
	})
}

// helper runs a Python script of testdata/ with a deadline: a parser that
// loops fails the test rather than hanging it.
func helper(t *testing.T, d *directory, py, script string, args ...string) string {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, py, append([]string{"testdata/" + script}, args...)...)
	cmd.Env = d.env("PYTHONPATH=.")
	out, err := cmd.CombinedOutput()
	if err != nil {
		t.Fatalf("%s: %v\n%s", script, err, out)
	}
	return string(out)
}

// questions cover what the parser meets: compression in every section,
// SRV, A, AAAA, TXT with bytes to escape, SOA, NS, MX, PTR, NXDOMAIN and
// NODATA with their SOA, and an answer too big for UDP (TC, then TCP).
var questions = []string{
	"_echo-alice._tcp.svc.internal./SRV", "box.svc.internal./A", "h-127-0-0-2.svc.internal./A",
	"echo-six.svc.internal./AAAA", "_echo-six._tcp.svc.internal./SRV",
	"_echo-alice._tcp.svc.internal./PTR", "_services._dns-sd._udp.svc.internal./PTR",
	"svc.internal./SOA", "svc.internal./NS", "svc.internal./MX", "2.0.0.127.in-addr.arpa./PTR",
	"nope.svc.internal./A", "echo-alice.svc.internal./AAAA", "_big._tcp.svc.internal./SRV",
}

// fixtures registers what the questions ask about.
func fixtures(t *testing.T, d *directory) {
	t.Helper()
	apiRegister(t, d, `{"name":"echo-alice","port":7007,"addresses":["127.0.0.2"],"txt":{"note":"dit \"bonjour\" \\ à tous","pid":"42"}}`)
	apiRegister(t, d, `{"name":"echo-six","port":7008,"addresses":["::1","2001:db8::1:2"]}`)
	for i := range 80 {
		apiRegister(t, d, fmt.Sprintf(`{"name":"big","port":%d,"addresses":["127.0.1.%d"]}`, 9000+i, i+1))
	}
}

// The hand-written parser reads real answers as dnspython does, and its
// query is the one dnspython builds.
func TestDNSParserAgainstDnspython(t *testing.T) {
	t.Parallel()
	py := interpreter(t, "dns.message")
	d := startAnnuaire(t)
	fixtures(t, d)
	out := helper(t, d, py, "dns_check.py", append([]string{d.dns}, questions...)...)
	if !strings.Contains(out, "_big._tcp.svc.internal./SRV: NOERROR, 80+0+") {
		t.Errorf("the big answer did not come whole over TCP:\n%s", out)
	}
	t.Logf("\n%s", out)
}

// annuaire.query (UDP, then TCP on TC) gives the records dig gives.
func TestDNSQueryAgainstDig(t *testing.T) {
	t.Parallel()
	d := startAnnuaire(t)
	fixtures(t, d)
	out := helper(t, d, interpreter(t), "dns_query.py", append([]string{d.dns}, questions...)...)
	answers := strings.Split(out, ";; ")[1:]
	if len(answers) != len(questions) {
		t.Fatalf("%d answers for %d questions:\n%s", len(answers), len(questions), out)
	}
	for i, q := range questions {
		name, qtype, _ := strings.Cut(q, "/")
		digOut := dig(t, d.dns, "+noall", "+answer", "+authority", "+additional", "+nottlunits", name, qtype)
		var want []string
		for _, line := range strings.Split(strings.TrimSpace(digOut), "\n") {
			if line != "" && !strings.HasPrefix(line, ";") {
				want = append(want, strings.Join(strings.Fields(line), " "))
			}
		}
		lines := strings.Split(strings.TrimSpace(answers[i]), "\n")
		got := lines[1:]
		sort.Strings(want)
		sort.Strings(got)
		if strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Errorf("%s (%s):\nannuaire.py:\n%s\ndig:\n%s", q, lines[0], strings.Join(got, "\n"), strings.Join(want, "\n"))
		}
	}
}

// The parser reads anything it is given or says it is malformed: real
// answers cut short at every byte and changed at random, and traps.
func TestDNSParserRobust(t *testing.T) {
	t.Parallel()
	d := startAnnuaire(t)
	fixtures(t, d)
	// The big answer is left out: over UDP it is only its truncated start.
	t.Log(helper(t, d, interpreter(t), "dns_mutate.py", append([]string{d.dns}, questions[:len(questions)-1]...)...))
}
