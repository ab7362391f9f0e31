//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package main

import (
	"bytes"
	"crypto/rand"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"regexp"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/services/echo"
)

// runFiles runs the command in-process with real file descriptors for
// stdin and stdout (pipes), as a shell gives them: feed writes stdin and
// closes it.
func runFiles(t *testing.T, feed func(w io.Writer), envv map[string]string, args ...string) (stdout []byte, stderr string, code int) {
	t.Helper()
	inR, inW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	outR, outW, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	defer inR.Close()
	defer outR.Close()
	go func() {
		feed(inW)
		inW.Close()
	}()
	read := make(chan []byte, 1)
	go func() {
		b, _ := io.ReadAll(outR)
		read <- b
	}()
	var errb bytes.Buffer
	e := &env{stdin: inR, stdout: outW, stderr: &errb, getenv: func(k string) string { return envv[k] }}
	code = exitCode(e, Run(t.Context(), e, args))
	outW.Close()
	return <-read, errb.String(), code
}

func TestDialSelect(t *testing.T) {
	envv := map[string]string{"ANNUAIRE_SERVER": startZoneDNS(t, echoZone(startEcho(t)))}
	out, errs, code := runFiles(t, func(w io.Writer) { io.WriteString(w, "bonjour\n") }, envv, "dial", "--select", "echo")
	if code != 0 || string(out) != "bonjour\n" {
		t.Fatalf("exit %d, stdout %q\n%s", code, out, errs)
	}

	// More than the two sockets' buffers hold (Linux lets a loopback
	// connection's grow to tens of MiB): the loop must keep reading the
	// echo while it sends, or the server, blocked writing it back, would
	// stop reading, and both would wait for ever.
	big := make([]byte, 32<<20)
	rand.Read(big)
	done := make(chan struct{})
	go func() {
		defer close(done)
		out, errs, code = runFiles(t, func(w io.Writer) { w.Write(big) }, envv, "dial", "--select", "--trace", "echo")
	}()
	select {
	case <-done:
	case <-time.After(60 * time.Second):
		t.Fatal("32 MiB through echo did not come back within 60 s")
	}
	if code != 0 || !bytes.Equal(out, big) {
		t.Fatalf("exit %d, %d bytes back of %d\n%s", code, len(out), len(big), errs)
	}
	if !strings.Contains(errs, fmt.Sprintf("sent %d bytes, received %d bytes", len(big), len(big))) {
		t.Errorf("--trace's summary:\n%s", errs)
	}

	// In-process stdin that is no descriptor: a clear refusal.
	_, errs, code = run(t, "x", envv, "dial", "--select", "echo")
	if code != 1 || !strings.Contains(errs, "--select waits in select(2) on the process's own stdin") {
		t.Errorf("stdin not a file: exit %d\n%s", code, errs)
	}
}

// TestDialSelectWaitsInQueue: against an iterative server busy with
// another client, the select loop waits as nc does, --trace says so when
// select's delay runs out, and the echo comes when the first client
// leaves.
func TestDialSelectWaitsInQueue(t *testing.T) {
	ln, err := echo.Listen(t.Context(), "tcp", "127.0.0.1:0", 1)
	if err != nil {
		t.Fatal(err)
	}
	srv := &echo.Server{Mode: "iterative"}
	served := make(chan error, 1)
	go func() { served <- srv.Serve(t.Context(), ln) }()
	t.Cleanup(func() {
		srv.Shutdown(t.Context())
		<-served
	})
	first, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	io.WriteString(first, "premier\n")
	if _, err := io.ReadFull(first, make([]byte, 8)); err != nil {
		t.Fatal(err)
	}
	leave := time.AfterFunc(2*time.Second, func() { first.Close() })
	defer leave.Stop()

	envv := map[string]string{"ANNUAIRE_SERVER": startZoneDNS(t, echoZone(ln.Addr().(*net.TCPAddr).Port))}
	out, errs, code := runFiles(t, func(w io.Writer) { io.WriteString(w, "second\n") }, envv, "dial", "--select", "--trace", "echo")
	t.Logf("annuaire dial --select --trace echo\n%s", errs)
	if code != 0 || string(out) != "second\n" {
		t.Fatalf("exit %d, stdout %q", code, out)
	}
	connected, waiting, firstByte := strings.Index(errs, "connected: "), strings.Index(errs, "waiting: "), strings.Index(errs, "first byte from")
	if connected < 0 || waiting < connected || firstByte < waiting {
		t.Errorf("--trace should say connected, then waiting, then the first byte")
	}
}

// TestDialSelectStrace runs the real command under strace: one thread
// waits in select(2) (pselect6 on some architectures) with stdin and the
// socket in its read set, and that same thread receives, sends and shuts
// the socket down — no goroutine per direction.
func TestDialSelectStrace(t *testing.T) {
	strace := testenv.NeedTool(t, "strace")
	envv := map[string]string{"ANNUAIRE_SERVER": startZoneDNS(t, echoZone(startEcho(t)))}
	cmd := exec.Command(strace, "-f", "-e", "trace=network,select,pselect6", os.Args[0], "dial", "--select", "echo")
	cmd.Env = append(os.Environ(), "ANNUAIRE_TEST_MAIN=1", "ANNUAIRE_SERVER="+envv["ANNUAIRE_SERVER"])
	cmd.Stdin = strings.NewReader("bonjour\n")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		if strings.Contains(stderr.String(), "PTRACE_TRACEME") || strings.Contains(stderr.String(), "Operation not permitted") {
			t.Skipf("strace cannot trace here: %s", firstLine(stderr.String()))
		}
		t.Fatalf("%v\n%s", err, stderr.Bytes())
	}
	if stdout.String() != "bonjour\n" {
		t.Fatalf("stdout %q", stdout.String())
	}
	trace := stderr.String()
	t.Logf("strace -f -e trace=network,select,pselect6 annuaire dial --select echo\n%s", trace)

	// [pid N] select(…, [0 S], …) or pselect6(…, [0 S], …)
	sel := regexp.MustCompile(`(?m)^(\[pid +\d+\] )?(?:p?select6?)\(\d+, \[0 (\d+)\]`).FindStringSubmatch(trace)
	if sel == nil {
		t.Fatalf("no select(2) with stdin and a socket in its read set")
	}
	who, s := sel[1], sel[2]
	for _, call := range []string{
		`sendmsg\(` + s + `, .*"bonjour\\n"`,
		`shutdown\(` + s + `, SHUT_WR\)`,
		`recvfrom\(` + s + `, "bonjour\\n"`,
		`recvfrom\(` + s + `, "", `,
	} {
		re := regexp.MustCompile(`(?m)^` + regexp.QuoteMeta(who) + call)
		if !re.MatchString(trace) {
			t.Errorf("the select loop's thread (%q) made no %s", who, call)
		}
	}
}

func firstLine(s string) string {
	line, _, _ := strings.Cut(s, "\n")
	return line
}
