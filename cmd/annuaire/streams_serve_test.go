package main

import (
	"bufio"
	"context"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
)

// slowReaders is a python3 client that opens N event streams with a
// 4 KB receive buffer and never reads them. Each time it reads a line on
// stdin it prints how many of them the server has closed, from the
// socket's state (TCP_INFO's first byte: 7 is CLOSE, after the server's
// reset; 8 is CLOSE_WAIT, after its FIN).
const slowReaders = `
import socket, struct, sys
host, port, n = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
socks = []
for i in range(n):
    s = socket.socket()
    s.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    s.connect((host, port))
    s.sendall(b"GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
    socks.append(s)
print("open", flush=True)
for line in sys.stdin:
    closed = sum(1 for s in socks if s.getsockopt(socket.IPPROTO_TCP, socket.TCP_INFO, 8)[0] in (7, 8))
    print(closed, flush=True)
`

// TestServeEventStreams: curl follows /api/events through a burst of
// registrations and sees the snapshot, then each change; twenty python
// clients that open a stream and never read are dropped by the server
// once a write has waited for them (they used to be held for ever, with
// their kernel buffers: 3,000 of them held 866 MB), while curl, which
// reads, is not.
func TestServeEventStreams(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("reads the TCP state from TCP_INFO, as Linux has it")
	}
	curl := testenv.NeedTool(t, "curl")
	python := testenv.Python(t)
	a := startServe(t)
	token, err := os.ReadFile(filepath.Join(a.data, "token"))
	if err != nil {
		t.Fatal(err)
	}

	ctx, cancel := context.WithTimeout(t.Context(), time.Minute)
	defer cancel()
	follow := exec.CommandContext(ctx, curl, "-sN", "http://"+a.web+"/api/events")
	stream, err := follow.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := follow.Start(); err != nil {
		t.Fatal(err)
	}
	defer follow.Wait()
	defer cancel()
	events := make(chan string, 1000)
	go func() {
		defer close(events)
		br := bufio.NewReaderSize(stream, 1<<20)
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if kind, ok := strings.CutPrefix(line, "event: "); ok {
				events <- strings.TrimSpace(kind)
			}
			if strings.HasPrefix(line, "data: ") && strings.Contains(line, `"instance":"last-one"`) {
				events <- "last"
			}
		}
	}()
	if kind := <-events; kind != "snapshot" {
		t.Fatalf("curl's first event: %q, want snapshot", kind)
	}

	slow := exec.CommandContext(ctx, python, "-c", slowReaders, "127.0.0.1", strings.Split(a.web, ":")[1], "20")
	ask, _ := slow.StdinPipe()
	answers, _ := slow.StdoutPipe()
	slow.Stderr = os.Stderr
	if err := slow.Start(); err != nil {
		t.Fatal(err)
	}
	defer slow.Wait()
	defer ask.Close()
	replies := bufio.NewScanner(answers)
	if !replies.Scan() || replies.Text() != "open" {
		t.Fatalf("python: %q %v", replies.Text(), replies.Err())
	}
	closed := func() string {
		fmt.Fprintln(ask, "?")
		if !replies.Scan() {
			t.Fatalf("python: %v", replies.Err())
		}
		return replies.Text()
	}

	// 300 registrations of 2 KB each: some 600 KB for each stream, far
	// more than the 64 KB send buffer and the 4 KB receive buffer of a
	// reader that does not read.
	var pad string // 8 TXT strings of 250 bytes: a string holds 255
	for i := range 8 {
		pad += fmt.Sprintf(`,"%d=%s"`, i, strings.Repeat("x", 248))
	}
	register := func(id string) {
		req, _ := http.NewRequest("POST", "http://"+a.web+"/api/services", strings.NewReader(
			`{"name":"pad","instance":"`+id+`","port":9,"addresses":["127.0.0.1"],"txt":["pad"`+pad+`]}`))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 201 {
			t.Fatalf("register %s: %d %s", id, resp.StatusCode, body)
		}
	}
	for i := range 300 {
		register(fmt.Sprintf("pad-%d", i))
	}
	register("last-one")

	// The slow readers go once a write has waited 10 s for them.
	deadline := time.Now().Add(40 * time.Second)
	for n := closed(); n != "20"; n = closed() {
		if time.Now().After(deadline) {
			out, _ := exec.Command("ss", "-tni", "sport", "= :"+strings.Split(a.web, ":")[1]).CombinedOutput()
			t.Fatalf("%s of 20 streams that are never read closed after 40 s\n%s", n, out)
		}
		time.Sleep(time.Second)
	}

	// curl read everything, to the last registration.
	for kind := range events {
		if kind == "last" {
			return
		}
		if kind != "change" && kind != "snapshot" {
			t.Fatalf("curl got a %q event", kind)
		}
	}
	t.Fatal("curl's stream ended before the last registration")
}
