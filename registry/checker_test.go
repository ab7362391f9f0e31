package registry

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"testing"
	"time"
)

// waitHealth waits, through snapshots, until instance id has health want.
func waitHealth(t *testing.T, r *Registry, id string, want Health, within time.Duration) {
	t.Helper()
	deadline := time.After(within)
	for {
		s := r.Snapshot()
		if inst, ok := s.Instance(id); ok && inst.Health == want {
			return
		}
		select {
		case <-s.Changed():
		case <-deadline:
			inst, _ := s.Instance(id)
			t.Fatalf("%s not %s within %s: %+v", id, want, within, inst)
		}
	}
}

// startChecker runs c until the test ends and checks that Run returns.
func startChecker(t *testing.T, c *Checker) {
	if c.Logger == nil {
		c.Logger = slog.New(slog.NewTextHandler(tbWriter{t}, nil))
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- c.Run(ctx) }()
	t.Cleanup(func() {
		cancel()
		select {
		case err := <-done:
			if err != nil {
				t.Errorf("Run: %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Error("Run did not return after its context ended")
		}
		c.mu.Lock()
		defer c.mu.Unlock()
		if len(c.checks) != 0 {
			t.Errorf("%d checks left running", len(c.checks))
		}
	})
}

func every(d time.Duration) Duration { return Duration(d) }

func TestCheckTCP(t *testing.T) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close() // a closed port: refused

	r := New(1)
	var logs logBuffer
	c := &Checker{Registry: r, Logger: slog.New(slog.NewTextHandler(&logs, nil))}
	startChecker(t, c)
	id := mustRegister(t, r, Instance{Service: "echo", Host: "a", Port: 7,
		Check: &Check{Type: "tcp", Target: addr, Interval: every(200 * time.Millisecond)}}, nil)
	healthy := mustRegister(t, r, Instance{Service: "echo", Host: "b", Port: 7}, nil)
	waitHealth(t, r, id, Critical, 3*time.Second)
	// Why is known before the health is recorded.
	if res, ok := c.Result(id); !ok || res.Health != Critical || !strings.Contains(res.Output, "connection refused") {
		t.Errorf("Result after a refused connect: %+v, %v", res, ok)
	}
	if _, ok := c.Result(healthy); ok {
		t.Errorf("a result for an instance without a check")
	}
	// The line is logged just after the update that waitHealth saw.
	for deadline := time.Now().Add(3 * time.Second); !strings.Contains(logs.String(), "id="+id+" from=passing to=critical"); {
		if time.Now().After(deadline) {
			t.Fatalf("transition not logged:\n%s", logs.String())
		}
		time.Sleep(10 * time.Millisecond)
	}

	ln, err = net.Listen("tcp", addr)
	if err != nil {
		t.Skipf("port %s taken meanwhile: %v", addr, err)
	}
	defer ln.Close()
	waitHealth(t, r, id, Passing, 3*time.Second)
	if res, ok := c.Result(id); !ok || res.Health != Passing || res.Output != "tcp connect to "+addr+" succeeded" {
		t.Errorf("Result after a connect: %+v, %v", res, ok)
	}
	if inst, _ := r.Snapshot().Instance(healthy); inst.Health != Passing {
		t.Error("instance without a check changed health")
	}

	// Deregistering stops the check.
	if err := r.Deregister(id); err != nil {
		t.Fatal(err)
	}
	deadline := time.Now().Add(3 * time.Second)
	for {
		c.mu.Lock()
		n := len(c.checks)
		c.mu.Unlock()
		if n == 0 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatal("check still running after deregistration")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

func TestCheckHTTP(t *testing.T) {
	var status atomic.Int32
	status.Store(200)
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, req *http.Request) {
		if req.URL.Path == "/loop" {
			http.Redirect(w, req, "/loop", http.StatusFound)
			return
		}
		w.WriteHeader(int(status.Load()))
	}))
	defer srv.Close()

	r := New(1)
	// A check's timeout is its interval: 100 ms, which a loaded machine
	// running the race detector can miss, so the waits are long and the
	// redirect loop's check, read once, has a second.
	iv := every(100 * time.Millisecond)
	c := &Checker{Registry: r}
	startChecker(t, c)
	id := mustRegister(t, r, Instance{Service: "http", Host: "w", Port: 80, Check: &Check{Type: "http", Target: srv.URL + "/", Interval: iv}}, nil)
	loop := mustRegister(t, r, Instance{Service: "http", Host: "w", Port: 81, Check: &Check{Type: "http", Target: srv.URL + "/loop", Interval: every(time.Second)}}, nil)
	status.Store(500)
	waitHealth(t, r, id, Critical, 10*time.Second)
	status.Store(204)
	waitHealth(t, r, id, Passing, 10*time.Second)
	deadline := time.Now().Add(10 * time.Second)
	res, ok := c.Result(loop)
	for ; !ok && time.Now().Before(deadline); res, ok = c.Result(loop) {
		time.Sleep(20 * time.Millisecond)
	}
	if !ok || res.Health != Passing {
		t.Errorf("a redirect loop is a 3xx, which passes: %+v, %v", res, ok)
	}

	// Changing the check restarts it: now pointed at nothing.
	mustRegister(t, r, Instance{Service: "http", Host: "w", Port: 80, Check: &Check{Type: "http", Target: "http://127.0.0.1:1/", Interval: iv}}, nil)
	waitHealth(t, r, id, Critical, 10*time.Second)
}

func TestCheckTTL(t *testing.T) {
	r := New(1)
	c := &Checker{Registry: r}
	startChecker(t, c)
	id := mustRegister(t, r, Instance{Service: "worker", Host: "w", Port: 1, Check: &Check{Type: "ttl", Interval: every(300 * time.Millisecond)}}, nil)
	plain := mustRegister(t, r, Instance{Service: "worker", Host: "w", Port: 2, Check: &Check{Type: "tcp", Target: "127.0.0.1:1", Interval: every(time.Second)}}, nil)

	// Heartbeats within the interval keep it passing.
	for range 4 {
		time.Sleep(100 * time.Millisecond)
		if err := c.Heartbeat(id); err != nil {
			t.Fatal(err)
		}
	}
	if inst, _ := r.Snapshot().Instance(id); inst.Health != Passing {
		t.Fatalf("heartbeating instance went %s", inst.Health)
	}
	waitHealth(t, r, id, Critical, 3*time.Second)
	if err := c.Heartbeat(id); err != nil {
		t.Fatal(err)
	}
	if inst, _ := r.Snapshot().Instance(id); inst.Health != Passing {
		t.Errorf("a heartbeat left it %s", inst.Health)
	}
	waitHealth(t, r, id, Critical, 3*time.Second)

	if err := c.Heartbeat("nope"); !errors.Is(err, ErrNotFound) {
		t.Errorf("Heartbeat(unknown) = %v", err)
	}
	if err := c.Heartbeat(plain); !errors.Is(err, ErrInvalid) {
		t.Errorf("Heartbeat(tcp-checked) = %v", err)
	}
}

// TestCheckerRestoredRegistry runs checks over a journaled registry: the
// checker's writes go through the journal like any other.
func TestCheckerJournaled(t *testing.T) {
	r := mustOpen(t, t.TempDir(), Options{})
	defer r.Close()
	startChecker(t, &Checker{Registry: r})
	id := mustRegister(t, r, Instance{Service: "echo", Host: "a", Port: 7, Check: &Check{Type: "tcp", Target: "127.0.0.1:1", Interval: every(100 * time.Millisecond)}}, nil)
	waitHealth(t, r, id, Critical, 3*time.Second)
}
