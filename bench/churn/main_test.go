package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/services/web"
)

const testToken = "s3cret"

// The hand-made body must be the bytes encoding/json made of the map
// churn used to marshal: the server sees no change.
func TestRegistrationBodyIsTheOldOne(t *testing.T) {
	for _, id := range []int{0, 1, 15, 255, 300} {
		w := newWorker(nil, nil, nil, id, 4)
		for range 120 {
			got := string(w.next())
			k := (w.id*7919+w.seq)%names + 1
			want, _ := json.Marshal(map[string]any{
				"name":      fmt.Sprintf("churn%d", k),
				"port":      10000 + w.seq%50000,
				"host":      fmt.Sprintf("churnh%d", w.id+1),
				"addresses": []string{fmt.Sprintf("10.250.%d.%d", (w.id+1)>>8, (w.id+1)&255)},
				"ttl":       60,
			})
			if got != string(want) {
				t.Fatalf("worker %d seq %d: body %s, want %s", id, w.seq, got, want)
			}
		}
	}
}

func TestIDOf(t *testing.T) {
	for body, want := range map[string]string{
		"{\n  \"id\": \"churn1-tcp-churnh1-10001\",\n  \"name\": \"churn1\"\n}\n": "churn1-tcp-churnh1-10001",
		`{"id":"a"}`:                 "a",
		`{"name":"x","id":"b"}`:      "b",
		`{"id":"c\"d"}`:              `c"d`,
		`{"id":""}`:                  "",
		`{"error":"no"}`:             "",
		`not json`:                   "",
		`{"id": "e", "chain": {"id"`: "e",
	} {
		if got := idOf([]byte(body)); got != want {
			t.Errorf("idOf(%q) = %q, want %q", body, got, want)
		}
	}
}

// startWeb serves a real annuaire web API on loopback.
func startWeb(t *testing.T) (*web.Server, string) {
	t.Helper()
	s := &web.Server{Registry: registry.New(1), Token: testToken}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		if err := <-done; err != nil {
			t.Errorf("Serve: %v", err)
		}
	})
	return s, "http://" + ln.Addr().String()
}

func mustAPI(t *testing.T, url, token string) *api {
	t.Helper()
	a, err := newAPI(url, token)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func soon() time.Time { return time.Now().Add(5 * time.Second) }

func TestAgainstTheServer(t *testing.T) {
	s, url := startWeb(t)
	w := newWorker(mustAPI(t, url, testToken), nil, nil, 0, 4)
	c := &w.conn
	defer c.close()
	id, err := c.register(w.next(), soon())
	if err != nil {
		t.Fatal(err)
	}
	if want := fmt.Sprintf("churn%d-tcp-churnh1-10001", (0*7919+1)%names+1); id != want {
		t.Errorf("id %q, want %q", id, want)
	}
	if _, ok := s.Registry.Snapshot().Instance(id); !ok {
		t.Errorf("%s not in the registry", id)
	}
	if err := c.deregister(id, soon()); err != nil {
		t.Fatal(err)
	}
	var se *statusError
	if err := c.deregister(id, soon()); !errors.As(err, &se) || se.status != http.StatusNotFound || !strings.Contains(se.body, "no instance") {
		t.Errorf("second DELETE: %v, want HTTP 404 with the server's message", err)
	}
	if accepted, _ := s.Stats(); accepted != 1 {
		t.Errorf("%d connections for 3 requests, want 1 kept alive", accepted)
	}

	bad := newWorker(mustAPI(t, url, "wrong"), nil, nil, 1, 4)
	defer bad.conn.close()
	if _, err := bad.conn.register(bad.next(), soon()); !errors.As(err, &se) || se.status != http.StatusUnauthorized || se.body != "wrong token" {
		t.Errorf("wrong token: %v, want HTTP 401: wrong token", err)
	}
}

// run end to end: the line bench/run.sh parses, and nothing left behind.
func TestRun(t *testing.T) {
	s, url := startWeb(t)
	token := filepath.Join(t.TempDir(), "token")
	if err := os.WriteFile(token, []byte(testToken+"\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	var out, errOut bytes.Buffer
	if err := run(&out, &errOut, url+"/", token, 400, 4, 3, time.Second, 50*time.Millisecond); err != nil {
		t.Fatalf("run: %v (%s)", err, errOut.String())
	}
	fields := map[string]string{}
	f := strings.Fields(out.String())
	for i := 1; i+1 < len(f); i++ {
		switch f[i] {
		case "writes/s":
			fields["rate"] = f[i-1]
		case "errors,":
			fields["errors"] = f[i-1]
		case "missed":
			fields["missed"] = f[i-1]
		case "p50", "p99":
			fields[f[i]] = f[i+1]
		}
	}
	if f[0] != "churn:" || len(fields) != 5 || fields["errors"] != "0" || errOut.Len() > 0 {
		t.Errorf("output %q %q, fields %v", out.String(), errOut.String(), fields)
	}
	for inst := range s.Registry.Snapshot().All() {
		t.Errorf("%s left after run", inst.ID)
	}
}

// scripted is a server that answers each request on a connection with the
// next of its answers, then closes that connection.
func scripted(t *testing.T, answers ...string) string {
	t.Helper()
	ln := testenv.ServeTCP(t, func(nc net.Conn) {
		br := bufio.NewReader(nc)
		for _, a := range answers {
			req, err := http.ReadRequest(br)
			if err != nil {
				return
			}
			req.Body.Close()
			nc.Write([]byte(a))
		}
	})
	return "http://" + ln.Addr().String()
}

func TestFraming(t *testing.T) {
	const created = "HTTP/1.1 201 Created\r\n"
	for _, tc := range []struct {
		name    string
		answers []string
	}{
		{"content-length", []string{created + "Content-Length: 11\r\n\r\n{\"id\":\"x1\"}"}},
		{"chunked", []string{created + "Transfer-Encoding: chunked\r\n\r\n4;ext=1\r\n{\"id\r\n7\r\n\":\"x1\"}\r\n0\r\nTrailer: t\r\n\r\n"}},
		{"connection close", []string{created + "Connection: close\r\nContent-Length: 11\r\n\r\n{\"id\":\"x1\"}"}},
		{"to the end", []string{"HTTP/1.0 201 Created\r\n\r\n{\"id\":\"x1\"}"}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// Every answer is followed by the server closing: the second
			// and third requests need a new connection, either because
			// the answer said so or through the retry.
			w := newWorker(mustAPI(t, scripted(t, tc.answers...), testToken), nil, nil, 0, 4)
			defer w.conn.close()
			for i := range 3 {
				id, err := w.conn.register(w.next(), soon())
				if err != nil || id != "x1" {
					t.Fatalf("request %d: %q, %v", i, id, err)
				}
			}
		})
	}
}

func TestFramingErrors(t *testing.T) {
	for name, answer := range map[string]string{
		"gzip":           "HTTP/1.1 201 Created\r\nTransfer-Encoding: gzip\r\n\r\n",
		"bad length":     "HTTP/1.1 201 Created\r\nContent-Length: -1\r\n\r\n",
		"status line":    "ICY 200 OK\r\n\r\n",
		"informational":  "HTTP/1.1 100 Continue\r\n\r\n",
		"short body":     "HTTP/1.1 201 Created\r\nContent-Length: 50\r\n\r\n{}",
		"too large":      fmt.Sprintf("HTTP/1.1 201 Created\r\nContent-Length: %d\r\n\r\n", maxBody+1),
		"no id":          "HTTP/1.1 201 Created\r\nContent-Length: 2\r\n\r\n{}",
		"bad chunk size": "HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
	} {
		t.Run(name, func(t *testing.T) {
			w := newWorker(mustAPI(t, scripted(t, answer), testToken), nil, nil, 0, 4)
			defer w.conn.close()
			if id, err := w.conn.register(w.next(), soon()); err == nil {
				t.Errorf("no error, id %q", id)
			}
		})
	}
}

func TestNewAPI(t *testing.T) {
	a := mustAPI(t, "http://example.org/prefix/", "tok")
	if a.addr != "example.org:80" || !strings.HasPrefix(a.postHead, "POST /prefix/api/services HTTP/1.1\r\nHost: example.org\r\nAuthorization: Bearer tok\r\n") || a.delHead != "DELETE /prefix/api/services/" {
		t.Errorf("%+v", a)
	}
	for _, bad := range [][2]string{{"https://x", "t"}, {"x:1", "t"}, {"http://x", "t\r\nX: y"}, {"http://x", ""}} {
		if _, err := newAPI(bad[0], bad[1]); err == nil {
			t.Errorf("newAPI(%q, %q): no error", bad[0], bad[1])
		}
	}
}
