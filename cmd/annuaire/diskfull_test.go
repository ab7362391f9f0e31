//go:build linux

package main

import (
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
)

// tinyDisk mounts a tmpfs of size bytes on a new directory, where root may
// mount (the registry's own tests fill a simulated disk and run anywhere).
func tinyDisk(t *testing.T, size int) string {
	t.Helper()
	dir := t.TempDir()
	if err := syscall.Mount("tmpfs", dir, "tmpfs", 0, fmt.Sprintf("size=%d,mode=0700", size)); err != nil {
		t.Skipf("cannot mount a tmpfs (%v): needs root; the registry's TestDiskFull covers a full disk everywhere", err)
	}
	t.Cleanup(func() {
		if err := syscall.Unmount(dir, syscall.MNT_DETACH); err != nil {
			t.Errorf("unmount %s: %v", dir, err)
		}
	})
	return dir
}

// fill writes a file in dir until the file system is full.
func fill(t *testing.T, dir string) string {
	t.Helper()
	path := filepath.Join(dir, "ballast")
	f, err := os.Create(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	chunk := make([]byte, 4096)
	for {
		if _, err := f.Write(chunk); err != nil {
			if !errors.Is(err, syscall.ENOSPC) {
				t.Fatal(err)
			}
			return path
		}
	}
}

// TestDiskFullServe is issue 18's acceptance, on a real full file system:
// a dead instance leaves DNS within its check interval while the disk is
// full, and again once space is back, when writes resume by themselves.
func TestDiskFullServe(t *testing.T) {
	testenv.NeedTool(t, "dig")
	data := tinyDisk(t, 2<<20)
	a := startServeOn(t, data, "--allow-transfer", "127.0.0.1/32")
	token, err := os.ReadFile(filepath.Join(data, "token"))
	if err != nil {
		t.Fatal(err)
	}
	var retryAfter string
	register := func(body string) (int, string) {
		req, _ := http.NewRequest("POST", "http://"+a.web+"/api/services", strings.NewReader(body))
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		msg, _ := io.ReadAll(resp.Body)
		retryAfter = resp.Header.Get("Retry-After")
		return resp.StatusCode, string(msg)
	}

	const iv = 500 * time.Millisecond
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	port := ln.Addr().(*net.TCPAddr).Port
	if code, msg := register(fmt.Sprintf(`{"name":"ghost","port":%d,"addresses":["127.0.0.1"],"check":{"type":"tcp","interval":"%s"}}`, port, iv)); code != http.StatusCreated {
		t.Fatalf("register ghost: %d %s", code, msg)
	}
	inDNS := func() bool {
		return strings.Contains(dig(t, a.dns, "+short", "_ghost._tcp.svc.internal.", "SRV"), fmt.Sprint(port))
	}
	// what a dead instance's absence must take at most: its interval,
	// the check's own timeout (the interval too), and dig's round trip,
	// with room for a machine loaded by the other packages' tests under
	// -race (it took 2.15 s there once): the bound says it leaves while
	// the disk is full, not how fast a loaded machine runs.
	const slack = 4 * time.Second
	gone := func(what string) {
		t.Helper()
		start := time.Now()
		for inDNS() {
			if time.Since(start) > 2*iv+slack {
				t.Fatalf("%s: the dead instance is still in DNS after %v\n%s", what, time.Since(start), a.stderr)
			}
			time.Sleep(50 * time.Millisecond)
		}
		t.Logf("%s: left DNS %v after it died", what, time.Since(start).Round(10*time.Millisecond))
	}
	back := func(what string) {
		t.Helper()
		deadline := time.Now().Add(2*iv + slack)
		for !inDNS() {
			if time.Now().After(deadline) {
				t.Fatalf("%s: the instance is alive and not in DNS", what)
			}
			time.Sleep(50 * time.Millisecond)
		}
	}
	if !inDNS() {
		t.Fatal("ghost not in DNS")
	}

	// Full: the ballast takes what is left, then registrations take the
	// zeros the journal wrote ahead of its frames.
	ballast := fill(t, data)
	full := false
	for i := 0; i < 5000 && !full; i++ {
		code, msg := register(fmt.Sprintf(`{"name":"svc%d","port":%d,"addresses":["127.0.1.%d"]}`, i, 10000+i%50000, i%250+1))
		if code != http.StatusCreated {
			// 507 Insufficient Storage, to be retried: the write may
			// succeed once there is space (it used to be a 500).
			if code != http.StatusInsufficientStorage || retryAfter == "" ||
				!strings.Contains(msg, "no space left on device") || !strings.Contains(msg, "writes resume by themselves") {
				t.Fatalf("registration on a full disk: %d (Retry-After %q) %s", code, retryAfter, msg)
			}
			full = true
		}
	}
	if !full {
		t.Fatal("5000 registrations on a full disk and none refused")
	}
	before := strings.Fields(dig(t, a.dns, "+short", "svc.internal.", "SOA"))[2]
	ln.Close()
	gone("disk full")
	// What a secondary at the serial before sees: the instance's records
	// deleted, in an incremental transfer (RFC 1995: the old SOA, what
	// goes, the new SOA, what comes).
	ixfr := dig(t, a.dns, "+time=10", "svc.internal.", "IXFR="+before)
	if !strings.Contains(ixfr, " "+before+" ") || !strings.Contains(ixfr, "_ghost._tcp.svc.internal.") {
		t.Errorf("IXFR from %s on a full disk does not carry the health change:\n%s", before, ixfr)
	}
	ln, err = net.Listen("tcp", fmt.Sprintf("127.0.0.1:%d", port))
	if err != nil {
		t.Skipf("port %d taken meanwhile: %v", port, err)
	}
	back("disk full")

	// Freed: writes resume by themselves.
	os.Remove(ballast)
	deadline := time.Now().Add(5 * time.Second)
	for {
		code, msg := register(`{"name":"after","port":9999,"addresses":["127.0.2.1"]}`)
		if code == http.StatusCreated {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("space is back and writes did not resume: %d %s", code, msg)
		}
		time.Sleep(100 * time.Millisecond)
	}
	ln.Close()
	gone("space back")
	if !strings.Contains(a.stderr.String(), "journal writable again") {
		t.Errorf("the log does not say writes resumed:\n%s", a.stderr)
	}
}
