package web

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/resolver"
	"github.com/annuaire/annuaire/services/mail"
)

const testToken = "s3cret-token"

// startServer serves s on a real loopback listener and returns its base
// URL; the server is shut down when the test ends.
func startServer(t testing.TB, s *Server) string {
	t.Helper()
	if s.Registry == nil {
		s.Registry = registry.New(1)
	}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil && !errors.Is(err, http.ErrServerClosed) { // a test may call Shutdown
				t.Errorf("Serve: %v", err)
			}
		case <-time.After(10 * time.Second):
			t.Errorf("Serve did not return after its context ended")
		}
	})
	return "http://" + ln.Addr().String()
}

type reply struct {
	status int
	header http.Header
	body   []byte
}

// call sends one request; token "" sends no Authorization header. Every
// /api answer must be valid JSON, and every error must be {"error": ...}.
func call(t testing.TB, method, url, token, body string) reply {
	t.Helper()
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, url, rd)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	r := reply{resp.StatusCode, resp.Header, b}
	if strings.Contains(url, "/api/") && method != http.MethodHead && r.status != http.StatusNoContent {
		if !json.Valid(b) {
			t.Fatalf("%s %s: %d, body is not JSON: %q", method, url, r.status, b)
		}
		if r.status >= 400 {
			var e map[string]any
			if err := json.Unmarshal(b, &e); err != nil || len(e) != 1 || e["error"] == nil {
				t.Fatalf("%s %s: %d, error body is not {\"error\": ...}: %s", method, url, r.status, b)
			}
		}
	}
	return r
}

func (r reply) errorText() string {
	var e ErrorBody
	json.Unmarshal(r.body, &e)
	return e.Error
}

func TestRoutes(t *testing.T) {
	base := startServer(t, &Server{Token: testToken})
	for _, tc := range []struct {
		method, path string
		status       int
		contains     string
		allow        string
	}{
		{"GET", "/", 200, "<title>annuaire", ""},
		{"GET", "/static/app.js", 200, "EventSource", ""},
		{"GET", "/static/style.css", 200, ".chain", ""},
		{"GET", "/healthz", 200, `"status": "ok"`, ""},
		{"GET", "/api/services", 200, "[]", ""},
		{"GET", "/api/services/nope", 404, "no instance", ""},
		{"GET", "/api/messages", 200, "[]", ""},
		{"GET", "/api/lookup?name=echo", 503, "not available", ""},
		{"GET", "/api/nothing", 404, "no such endpoint", ""},
		{"GET", "/nothing", 404, "", ""},
		{"PATCH", "/api/services", 405, "not allowed", "GET, HEAD, POST"},
		{"POST", "/api/services/x", 405, "not allowed", "GET, HEAD, DELETE"},
		{"GET", "/api/services/x/heartbeat", 405, "not allowed", "PUT"},
		{"DELETE", "/api/lookup", 405, "not allowed", "GET, HEAD"},
		{"POST", "/healthz", 405, "not allowed", "GET, HEAD"},
	} {
		t.Run(tc.method+tc.path, func(t *testing.T) {
			r := call(t, tc.method, base+tc.path, "", "")
			if r.status != tc.status {
				t.Fatalf("status %d, want %d: %s", r.status, tc.status, r.body)
			}
			if !strings.Contains(string(r.body), tc.contains) {
				t.Errorf("body %q does not contain %q", r.body, tc.contains)
			}
			if got := r.header.Get("Allow"); got != tc.allow {
				t.Errorf("Allow %q, want %q", got, tc.allow)
			}
		})
	}
	r := call(t, "GET", base+"/", "", "")
	if csp := r.header.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("page CSP %q", csp)
	}
}

func register(t testing.TB, base, body string) map[string]any {
	t.Helper()
	r := call(t, "POST", base+"/api/services", testToken, body)
	if r.status != http.StatusCreated {
		t.Fatalf("POST %s: %d %s", body, r.status, r.body)
	}
	var v map[string]any
	if err := json.Unmarshal(r.body, &v); err != nil {
		t.Fatal(err)
	}
	if loc := r.header.Get("Location"); loc != "/api/services/"+v["id"].(string) {
		t.Errorf("Location %q for id %v", loc, v["id"])
	}
	return v
}

func TestRegisterDefaults(t *testing.T) {
	for _, tc := range []struct {
		name, body string
		want       map[string]any // top-level fields of the answer
		addrs      string         // addresses joined by ","
		srv        string
	}{
		{"catalog port, caller's address", `{"name":"echo"}`,
			map[string]any{"id": "echo-tcp-h-127-0-0-1-7", "name": "echo", "proto": "tcp", "port": 7.0, "host": "h-127-0-0-1", "health": "passing", "ttl": 10.0},
			"127.0.0.1", "_echo._tcp.svc.internal. SRV 0 0 7 h-127-0-0-1.svc.internal."},
		{"alias becomes its canonical name", `{"name":"mail","port":2525}`,
			map[string]any{"name": "smtp", "port": 2525.0}, "127.0.0.1", "_smtp._tcp.svc.internal. SRV 0 0 2525 h-127-0-0-1.svc.internal."},
		{"host named after the first address", `{"name":"web","proto":"TCP","port":8080,"addresses":["10.0.0.1","::1"],"priority":1,"weight":5,"ttl":60}`,
			map[string]any{"host": "h-10-0-0-1", "priority": 1.0, "weight": 5.0, "ttl": 60.0}, "10.0.0.1,::1", "_web._tcp.svc.internal. SRV 1 5 8080 h-10-0-0-1.svc.internal."},
		{"explicit host, fully qualified", `{"name":"echo","proto":"udp","port":7007,"host":"Box.svc.internal.","addresses":["192.0.2.7"],"txt":{"path":"/"}}`,
			map[string]any{"host": "box", "proto": "udp", "txt": []any{"path=/"}}, "192.0.2.7", "_echo._udp.svc.internal. SRV 0 0 7007 box.svc.internal."},
		{"TXT as a list, in order, a boolean key, ttl 0", `{"name":"ipp","port":631,"txt":["txtvers=1","duplex","paper=A4","empty="],"ttl":0}`,
			map[string]any{"txt": []any{"txtvers=1", "duplex", "paper=A4", "empty="}, "ttl": 0}, "127.0.0.1", ""},
		{"subtypes, with or without their underscore", `{"name":"ipp","port":631,"subtypes":["printer","_scan"]}`,
			map[string]any{"subtypes": []any{"_printer", "_scan"}}, "127.0.0.1", ""},
		{"a UTF-8 instance name, as given", `{"name":"ipp","port":631,"instance":"Imprimante Salle 2.3 (étage)"}`,
			map[string]any{"instance": "Imprimante Salle 2.3 (étage)"}, "127.0.0.1", ""},
		// A JSON string is Unicode: other bytes, which UPDATE may have
		// put in a label, go as {"base64": ...} both ways, as TXT's do.
		{"a label and a subtype of any bytes", `{"name":"ipp","port":631,"instance":{"base64":"Ymlu/g=="},"subtypes":[{"base64":"X3D+"},"scan"]}`,
			map[string]any{"instance": map[string]any{"base64": "Ymlu/g=="}, "subtypes": []any{map[string]any{"base64": "X3D+"}, "_scan"}}, "127.0.0.1", ""},
		{"TXT as an object keeps its order", `{"name":"ipp","port":631,"txt":{"txtvers":"1","b":"2","a":""}}`,
			map[string]any{"txt": []any{"txtvers=1", "b=2", "a="}, "ttl": 10}, "127.0.0.1", ""},
		{"tcp check defaults to the endpoint", `{"name":"echo","port":7007,"addresses":["192.0.2.8"],"check":{"type":"tcp"}}`,
			map[string]any{"check": map[string]any{"type": "tcp", "target": "192.0.2.8:7007", "interval": "10s"}}, "192.0.2.8", ""},
		{"http check", `{"name":"http","port":8080,"check":{"type":"http","interval":"1s"}}`,
			map[string]any{"check": map[string]any{"type": "http", "target": "http://127.0.0.1:8080/", "interval": "1s"}}, "127.0.0.1", ""},
		{"ttl check", `{"name":"echo","port":7,"check":{"type":"ttl","interval":"5s"}}`,
			map[string]any{"check": map[string]any{"type": "ttl", "interval": "5s"}}, "127.0.0.1", ""},
	} {
		t.Run(tc.name, func(t *testing.T) {
			base := startServer(t, &Server{Token: testToken})
			v := register(t, base, tc.body)
			for k, want := range tc.want {
				if got, _ := json.Marshal(v[k]); string(got) != mustJSON(want) {
					t.Errorf("%s = %s, want %s", k, got, mustJSON(want))
				}
			}
			var addrs []string
			for _, a := range v["addresses"].([]any) {
				addrs = append(addrs, a.(string))
			}
			if got := strings.Join(addrs, ","); got != tc.addrs {
				t.Errorf("addresses %s, want %s", got, tc.addrs)
			}
			chain := v["chain"].(map[string]any)
			if tc.srv != "" && chain["srv"] != tc.srv {
				t.Errorf("chain.srv %q, want %q", chain["srv"], tc.srv)
			}
			// The same instance is in the list and at its own URL.
			r := call(t, "GET", base+"/api/services/"+v["id"].(string), "", "")
			if r.status != 200 || !strings.Contains(string(r.body), `"chain"`) {
				t.Errorf("GET by id: %d %s", r.status, r.body)
			}
			var list []map[string]any
			json.Unmarshal(call(t, "GET", base+"/api/services", "", "").body, &list)
			if len(list) != 1 || list[0]["id"] != v["id"] {
				t.Errorf("list %v", list)
			}
		})
	}
}

func mustJSON(v any) string {
	b, _ := json.Marshal(v)
	return string(b)
}

func TestRegisterInvalid(t *testing.T) {
	s := &Server{Token: testToken, Registry: registry.New(1)}
	base := startServer(t, s)
	long := strings.Repeat("a", 64)
	for _, tc := range []struct {
		body, field string
	}{
		{`{"port":7}`, "name"},
		{`{"name":"no_such!"}`, "name"},
		{`{"name":"nosuchservice"}`, "port"},
		{`{"name":"echo","port":0}`, "port"},
		{`{"name":"echo","port":70000}`, "port"},
		{`{"name":"echo","port":-1}`, "port"},
		{`{"name":"echo","port":"7"}`, "port"},
		{`{"name":"echo","port":7.5}`, "port"},
		{`{"name":"echo","proto":"sctp"}`, "proto"},
		{`{"name":"echo","addresses":["not-an-ip"]}`, "addresses"},
		{`{"name":"echo","addresses":"127.0.0.1"}`, "addresses"},
		{`{"name":"echo","host":"bad..host","addresses":["127.0.0.1"]}`, "host"},
		{`{"name":"echo","host":"` + long + `","addresses":["127.0.0.1"]}`, "host"},
		{`{"name":"echo","priority":-1}`, "priority"},
		{`{"name":"echo","weight":65536}`, "weight"},
		{`{"name":"echo","ttl":99999999}`, "ttl"},
		{`{"name":"echo","txt":{"a=b":"c"}}`, "txt"},
		{`{"name":"echo","txt":{"a":1}}`, "txt"},
		{`{"name":"echo","txt":["=b"]}`, "txt"},
		{`{"name":"echo","txt":["a=1","A=2"]}`, "txt"},
		{`{"name":"echo","txt":"a=1"}`, "txt"},
		{`{"name":"echo","check":{"type":"icmp"}}`, "check.type"},
		{`{"name":"echo","check":{"type":"tcp","interval":"soon"}}`, "check.interval"},
		{`{"name":"echo","check":{"type":"tcp","interval":"1ms"}}`, "check.interval"},
		{`{"name":"echo","check":{"type":"tcp","target":"nowhere"}}`, "check.target"},
		{`{"name":"echo","check":{"type":"http","target":"ftp://x/"}}`, "check.target"},
		{`{"name":"echo","check":{"type":"ttl","target":"x:1"}}`, "check.target"},
		{`{"name":"echo","proto":"udp","check":{"type":"tcp"}}`, "check.type"},
		{`{"name":"echo","proto":"UDP","check":{"type":"tcp","target":"127.0.0.1:7"}}`, "check.type"},
		{`{"name":"echo","colour":"blue"}`, "unknown field"},
		{`{"name":"echo","check":{"type":"tcp","every":"1s"}}`, "unknown field"},
		{`{"name":"echo"} {"name":"echo"}`, "after the JSON object"},
		{`{"name":"echo"}]`, "body"},
		{``, "empty"},
		{`name=echo`, "invalid JSON"},
		{`{"name":"echo"`, "cut short"},
		{`["echo"]`, "JSON object"},
		{`null`, "name"},
		{`{"name":"echo","addresses":[` + manyAddrs(registry.MaxAddresses+1) + `]}`, "invalid addresses \"33 addresses\": a host has at most 32"},
	} {
		t.Run(tc.body, func(t *testing.T) {
			before := s.Registry.Snapshot().Serial()
			r := call(t, "POST", base+"/api/services", testToken, tc.body)
			if r.status != http.StatusBadRequest {
				t.Fatalf("status %d, want 400: %s", r.status, r.body)
			}
			if !strings.Contains(r.errorText(), tc.field) {
				t.Errorf("error %q does not name %q", r.errorText(), tc.field)
			}
			if after := s.Registry.Snapshot().Serial(); after != before {
				t.Errorf("serial moved from %d to %d: something was written", before, after)
			}
		})
	}
	if n := len(call(t, "GET", base+"/api/services", "", "").body); n != len("[]\n") {
		t.Errorf("registry not empty after rejected writes")
	}
}

func TestBodyCap(t *testing.T) {
	s := &Server{Token: testToken, MaxBody: 100}
	base := startServer(t, s)
	body := `{"name":"echo","txt":{"k":"` + strings.Repeat("x", 200) + `"}}`
	r := call(t, "POST", base+"/api/services", testToken, body)
	if r.status != http.StatusRequestEntityTooLarge {
		t.Fatalf("status %d, want 413: %s", r.status, r.body)
	}
	if !strings.Contains(r.errorText(), "100 bytes") {
		t.Errorf("error %q", r.errorText())
	}
	// Just under the cap is fine.
	register(t, base, `{"name":"echo","port":7}`)
}

func TestAuth(t *testing.T) {
	s := &Server{Token: testToken, Registry: registry.New(1), Health: func(string) error { return nil }}
	base := startServer(t, s)
	id := register(t, base, `{"name":"echo","port":7}`)["id"].(string)
	serial := s.Registry.Snapshot().Serial()

	writes := []struct{ method, path, body string }{
		{"POST", "/api/services", `{"name":"echo","port":8}`},
		{"DELETE", "/api/services/" + id, ""},
		{"PUT", "/api/services/" + id + "/heartbeat", ""},
	}
	for _, w := range writes {
		for _, tc := range []struct {
			name, header, challenge string
		}{
			{"no token", "", `Bearer realm="annuaire"`},
			{"wrong token", "Bearer wrong", `Bearer realm="annuaire", error="invalid_token"`},
			{"token prefix", "Bearer " + testToken[:4], `Bearer realm="annuaire", error="invalid_token"`},
			{"basic auth", "Basic " + testToken, `Bearer realm="annuaire"`},
		} {
			t.Run(w.method+" "+tc.name, func(t *testing.T) {
				req, _ := http.NewRequest(w.method, base+w.path, strings.NewReader(w.body))
				if tc.header != "" {
					req.Header.Set("Authorization", tc.header)
				}
				resp, err := http.DefaultClient.Do(req)
				if err != nil {
					t.Fatal(err)
				}
				resp.Body.Close()
				if resp.StatusCode != http.StatusUnauthorized {
					t.Fatalf("status %d, want 401", resp.StatusCode)
				}
				if got := resp.Header.Get("WWW-Authenticate"); got != tc.challenge {
					t.Errorf("WWW-Authenticate %q, want %q", got, tc.challenge)
				}
			})
		}
	}
	if got := s.Registry.Snapshot().Serial(); got != serial {
		t.Errorf("serial %d after refused writes, want %d", got, serial)
	}
	// The scheme is case-insensitive (RFC 7235 section 2.1).
	req, _ := http.NewRequest("DELETE", base+"/api/services/"+id, nil)
	req.Header.Set("Authorization", "bearer "+testToken)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusNoContent {
		t.Errorf("lowercase bearer: %d", resp.StatusCode)
	}

	t.Run("server without token", func(t *testing.T) {
		base := startServer(t, &Server{})
		r := call(t, "POST", base+"/api/services", "anything", `{"name":"echo"}`)
		if r.status != http.StatusUnauthorized || !strings.Contains(r.errorText(), "no token") {
			t.Errorf("%d %s", r.status, r.body)
		}
	})
}

func TestDeregister(t *testing.T) {
	s := &Server{Token: testToken, Registry: registry.New(1)}
	base := startServer(t, s)
	a := register(t, base, `{"name":"echo","port":7007,"addresses":["192.0.2.1"]}`)["id"].(string)
	b := register(t, base, `{"name":"echo","port":7008,"addresses":["192.0.2.1"]}`)["id"].(string)

	if r := call(t, "DELETE", base+"/api/services/"+a, testToken, ""); r.status != http.StatusNoContent || len(r.body) != 0 {
		t.Fatalf("DELETE: %d %q", r.status, r.body)
	}
	if r := call(t, "DELETE", base+"/api/services/"+a, testToken, ""); r.status != http.StatusNotFound {
		t.Errorf("second DELETE: %d", r.status)
	}
	if r := call(t, "GET", base+"/api/services/"+a, "", ""); r.status != http.StatusNotFound {
		t.Errorf("GET after DELETE: %d", r.status)
	}
	// The host made by the registrations lives while an instance uses it.
	if _, ok := s.Registry.Snapshot().Host("h-192-0-2-1"); !ok {
		t.Errorf("host gone while %s still uses it", b)
	}
	call(t, "DELETE", base+"/api/services/"+b, testToken, "")
	if _, ok := s.Registry.Snapshot().Host("h-192-0-2-1"); ok {
		t.Errorf("automatic host left behind")
	}
}

func TestHeartbeat(t *testing.T) {
	var mu sync.Mutex
	var beats []string
	s := &Server{Token: testToken, Health: func(id string) error {
		mu.Lock()
		defer mu.Unlock()
		if strings.HasPrefix(id, "http") {
			return errors.New("instance " + id + " has no ttl check")
		}
		beats = append(beats, id)
		return nil
	}}
	base := startServer(t, s)
	id := register(t, base, `{"name":"echo","port":7,"check":{"type":"ttl","interval":"5s"}}`)["id"].(string)
	other := register(t, base, `{"name":"http","port":80}`)["id"].(string)

	if r := call(t, "PUT", base+"/api/services/"+id+"/heartbeat", testToken, ""); r.status != 200 {
		t.Errorf("heartbeat: %d %s", r.status, r.body)
	}
	if r := call(t, "PUT", base+"/api/services/nope/heartbeat", testToken, ""); r.status != 404 {
		t.Errorf("unknown id: %d %s", r.status, r.body)
	}
	if r := call(t, "PUT", base+"/api/services/"+other+"/heartbeat", testToken, ""); r.status != 409 || !strings.Contains(r.errorText(), "no ttl check") {
		t.Errorf("hook error: %d %s", r.status, r.body)
	}
	mu.Lock()
	if len(beats) != 1 || beats[0] != id {
		t.Errorf("beats %v", beats)
	}
	mu.Unlock()

	base = startServer(t, &Server{Token: testToken})
	id = register(t, base, `{"name":"echo","port":7}`)["id"].(string)
	if r := call(t, "PUT", base+"/api/services/"+id+"/heartbeat", testToken, ""); r.status != 404 {
		t.Errorf("no hook: %d", r.status)
	}
}

// fakeTrace has the shape of package resolver's lookup trace.
func fakeTrace(name string) *resolver.Chain {
	return &resolver.Chain{
		Name: name, Service: "echo", Proto: "tcp", Zone: "svc.internal.",
		Steps: []resolver.Step{
			{Step: "normalize", Question: name, Answers: []string{"echo"}},
			{Step: "srv", Question: "_echo._tcp.svc.internal. SRV", Server: "127.0.0.1:1053", Rcode: "NOERROR", DurationUS: 412,
				Answers: []string{"_echo._tcp.svc.internal. 10 IN SRV 0 0 7007 h-127-0-0-1.svc.internal."}},
			{Step: "address", Question: "h-127-0-0-1.svc.internal. A", Server: "127.0.0.1:1053", Rcode: "NOERROR", Cached: true,
				Answers: []string{"h-127-0-0-1.svc.internal. 10 IN A 127.0.0.1"}},
			{Step: "well-known", Question: "echo", Skipped: "the SRV record gave the port"},
			{Step: "connect", Question: "127.0.0.1:7007", DurationUS: 95},
		},
		Candidates: []resolver.Candidate{{Host: "h-127-0-0-1.svc.internal.", Address: "127.0.0.1", Port: 7007}},
	}
}

func TestLookup(t *testing.T) {
	var gotName string
	base := startServer(t, &Server{Lookup: func(ctx context.Context, name string) (*resolver.Chain, error) {
		gotName = name
		if name == "broken" {
			return nil, errors.New("resolver: no server answered")
		}
		if name == "nothing" {
			c := &resolver.Chain{Name: name, Error: "no such service"}
			return c, errors.New("no such service")
		}
		return fakeTrace(name), nil
	}})
	r := call(t, "GET", base+"/api/lookup?name=echo", "", "")
	if r.status != 200 || gotName != "echo" || !strings.Contains(string(r.body), `"candidates"`) {
		t.Errorf("lookup: %d %s (hook got %q)", r.status, r.body, gotName)
	}
	if r := call(t, "GET", base+"/api/lookup", "", ""); r.status != 400 || !strings.Contains(r.errorText(), "name") {
		t.Errorf("no name: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", base+"/api/lookup?name="+strings.Repeat("a", 256), "", ""); r.status != 400 {
		t.Errorf("long name: %d", r.status)
	}
	if r := call(t, "GET", base+"/api/lookup?name=nothing", "", ""); r.status != 200 || !strings.Contains(string(r.body), "no such service") {
		t.Errorf("failed lookup with trace: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", base+"/api/lookup?name=broken", "", ""); r.status != 502 || !strings.Contains(r.errorText(), "no server answered") {
		t.Errorf("failed lookup without trace: %d %s", r.status, r.body)
	}
}

func TestMessages(t *testing.T) {
	var list []mail.Message // nil at first: must still be []
	base := startServer(t, &Server{Messages: func() []mail.Message { return list }})
	if r := call(t, "GET", base+"/api/messages", "", ""); strings.TrimSpace(string(r.body)) != "[]" {
		t.Errorf("no messages: %s", r.body)
	}
	list = []mail.Message{{From: "a@x", To: []string{"b@y"}, Subject: "hello"}}
	if r := call(t, "GET", base+"/api/messages", "", ""); !strings.Contains(string(r.body), `"hello"`) {
		t.Errorf("messages: %s", r.body)
	}
}

func TestServeStops(t *testing.T) {
	s := &Server{Registry: registry.New(1)}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, ln) }()
	if r := call(t, "GET", "http://"+addr+"/healthz", "", ""); r.status != 200 {
		t.Fatalf("healthz %d", r.status)
	}
	cancel()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("Serve returned %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("Serve did not return")
	}
	if c, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		c.Close()
		t.Errorf("port %s still open after Serve returned", addr)
	}
	// Shutdown after the fact is harmless, and Serve then refuses at once.
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	again, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Serve(context.Background(), again); !errors.Is(err, http.ErrServerClosed) {
		t.Errorf("Serve after Shutdown: %v, want http.ErrServerClosed", err)
	}
}

func TestLoadOrCreateToken(t *testing.T) {
	dir := filepath.Join(t.TempDir(), "state", "annuaire")
	var wg sync.WaitGroup
	toks := make([]string, 8)
	errs := make([]error, 8)
	for i := range toks {
		wg.Go(func() { toks[i], errs[i] = LoadOrCreateToken(dir) })
	}
	wg.Wait()
	for i := range toks {
		if errs[i] != nil {
			t.Fatal(errs[i])
		}
		if toks[i] != toks[0] {
			t.Fatalf("concurrent first starts disagree: %q vs %q", toks[i], toks[0])
		}
	}
	if len(toks[0]) < 40 {
		t.Errorf("token %q is short", toks[0])
	}
	fi, err := os.Stat(filepath.Join(dir, TokenFile))
	if err != nil {
		t.Fatal(err)
	}
	if fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}
	again, err := LoadOrCreateToken(dir)
	if err != nil || again != toks[0] {
		t.Errorf("second start: %q %v", again, err)
	}
	if got, err := ReadToken(dir); err != nil || got != toks[0] {
		t.Errorf("ReadToken: %q %v", got, err)
	}
	if entries, _ := os.ReadDir(dir); len(entries) != 1 {
		t.Errorf("temporary files left: %v", entries)
	}
	if _, err := ReadToken(t.TempDir()); err == nil {
		t.Errorf("ReadToken of an empty directory succeeded")
	}
}

// TestCurl drives the API with the real curl, as the README does.
func TestCurl(t *testing.T) {
	curl := testenv.NeedTool(t, "curl")
	s := &Server{Token: testToken, Registry: registry.New(1)}
	base := startServer(t, s)
	run := func(args ...string) (string, string) {
		t.Helper()
		out, err := exec.Command(curl, append([]string{"-sS", "-w", "\n%{http_code}"}, args...)...).Output()
		if err != nil {
			t.Fatalf("curl %v: %v", args, err)
		}
		i := strings.LastIndex(string(out), "\n")
		return strings.TrimSpace(string(out[:i])), string(out[i+1:])
	}
	body, code := run("-X", "POST", "-H", "Authorization: Bearer "+testToken, "-d", `{"name":"echo","port":7007}`, base+"/api/services")
	if code != "201" || !strings.Contains(body, `"id": "echo-tcp-h-127-0-0-1-7007"`) {
		t.Fatalf("curl POST: %s %s", code, body)
	}
	body, code = run("-d", `{"name":"echo","port":7008}`, base+"/api/services")
	if code != "401" || !strings.Contains(body, `"error"`) {
		t.Fatalf("curl POST without token: %s %s", code, body)
	}
	body, code = run(base + "/api/services")
	var list []map[string]any
	if code != "200" || json.Unmarshal([]byte(body), &list) != nil || len(list) != 1 || list[0]["port"] != 7007.0 {
		t.Fatalf("curl GET: %s %s", code, body)
	}
	body, code = run(base + "/")
	if code != "200" || !strings.Contains(body, "annuaire") {
		t.Fatalf("curl /: %s", code)
	}
	_, code = run("-X", "DELETE", "-H", "Authorization: Bearer "+testToken, base+"/api/services/echo-tcp-h-127-0-0-1-7007")
	if code != "204" {
		t.Fatalf("curl DELETE: %s", code)
	}
}

// exposedListener is a loopback listener that says it listens on every
// interface, as one bound to 0.0.0.0 would: the tests stay on loopback.
type exposedListener struct{ net.Listener }

func (exposedListener) Addr() net.Addr { return &net.TCPAddr{IP: net.IPv4zero, Port: 8080} }

// On a listener reachable beyond loopback, the received mail is shown
// only with the token: not by /api/messages without it, not on the page.
func TestMessagesExposed(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	s := &Server{Registry: registry.New(1), Token: testToken, Messages: func() []mail.Message {
		return []mail.Message{{Subject: "bulletin de notes", Body: "confidentiel"}}
	}}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- s.Serve(ctx, exposedListener{ln}) }()
	t.Cleanup(func() { cancel(); <-done })
	base := "http://" + ln.Addr().String()

	if r := call(t, "GET", base+"/api/messages", "", ""); r.status != http.StatusUnauthorized {
		t.Errorf("exposed /api/messages without the token: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", base+"/api/messages", testToken, ""); r.status != 200 || !strings.Contains(string(r.body), "confidentiel") {
		t.Errorf("exposed /api/messages with the token: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", base+"/", "", ""); r.status != 200 || strings.Contains(string(r.body), "confidentiel") {
		t.Errorf("exposed page: %d, shows the mail: %v", r.status, strings.Contains(string(r.body), "confidentiel"))
	}
	// On loopback, the page shows it, as before.
	local := startServer(t, &Server{Messages: s.Messages})
	if r := call(t, "GET", local+"/", "", ""); !strings.Contains(string(r.body), "confidentiel") {
		t.Errorf("the page on loopback does not show the mail")
	}
}

// manyAddrs lists n distinct addresses in JSON: "10.0.0.1", "10.0.0.2", ...
func manyAddrs(n int) string {
	var b strings.Builder
	for i := range n {
		if i > 0 {
			b.WriteByte(',')
		}
		fmt.Fprintf(&b, `"10.0.0.%d"`, i+1)
	}
	return b.String()
}
