package main

import (
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/services/web"
)

// TestServeMaxInstances: past --max-instances, the CLI, curl and nsupdate
// are refused, each as its protocol says (one line with a hint, HTTP 409,
// REFUSED), and DNS shows nothing new; a re-registration is accepted; a
// restart with the cap lowered below what the journal holds serves all of
// it, with its hosted services, and refuses new registrations.
func TestServeMaxInstances(t *testing.T) {
	nsupdate := testenv.NeedTool(t, "nsupdate")
	keygen := testenv.NeedTool(t, "tsig-keygen")
	curl := testenv.NeedTool(t, "curl")
	key, err := exec.Command(keygen, "-a", "hmac-sha256", "ddns-key").Output()
	if err != nil {
		t.Fatal(err)
	}
	keyFile := filepath.Join(t.TempDir(), "ddns.key")
	if err := os.WriteFile(keyFile, key, 0o600); err != nil {
		t.Fatal(err)
	}
	hosted := 0 // the hosted services count, and are never refused
	for _, h := range hostedServices() {
		hosted += len(h.protos)
	}
	data := t.TempDir()
	a := startServeOn(t, data, "--tsig-file", keyFile, "--max-instances", strconv.Itoa(hosted+2))
	token, err := web.ReadToken(data)
	if err != nil {
		t.Fatal(err)
	}

	register := func(a *annuaire, port int, more ...string) (string, int) {
		t.Helper()
		args := append([]string{"register", "db", strconv.Itoa(port), "--address", "127.0.0.2", "--web", a.web, "--data", data}, more...)
		_, stderr, code := runCLI(t, nil, args...)
		return stderr, code
	}
	post := func(a *annuaire, port int) string { // status and body
		t.Helper()
		out, err := exec.Command(curl, "-sS", "-w", " %{http_code}", "-H", "Authorization: Bearer "+token,
			"--data", fmt.Sprintf(`{"name":"db","port":%d,"addresses":["127.0.0.2"]}`, port),
			"http://"+a.web+"/api/services").CombinedOutput()
		if err != nil {
			t.Fatalf("curl: %v\n%s", err, out)
		}
		return strings.TrimSpace(string(out))
	}
	update := func(a *annuaire, port int) string {
		t.Helper()
		host, p, _ := net.SplitHostPort(a.dns)
		cmd := exec.Command(nsupdate, "-k", keyFile)
		cmd.Stdin = strings.NewReader(fmt.Sprintf("server %s %s\nupdate add _db._tcp.svc.internal. 60 SRV 0 0 %d h-127-0-0-2.svc.internal.\nsend\n", host, p, port))
		out, _ := cmd.CombinedOutput()
		return string(out)
	}
	srv := func(a *annuaire) string {
		t.Helper()
		return dig(t, a.dns, "+short", "_db._tcp.svc.internal.", "SRV")
	}
	const two = "0 0 5432 h-127-0-0-2.svc.internal.\n0 0 5433 h-127-0-0-2.svc.internal.\n"
	full := fmt.Sprintf("the directory holds %d instances, the most it may: deregister some first", hosted+2)

	for _, port := range []int{5432, 5433} {
		if stderr, code := register(a, port); code != 0 {
			t.Fatalf("register db %d: %d %s", port, code, stderr)
		}
	}
	if stderr, code := register(a, 5434); code != 1 || strings.Count(stderr, "\n") != 1 ||
		!strings.Contains(stderr, full+" (HTTP 409); the server's limit is annuaire serve --max-instances (0: no limit)") {
		t.Errorf("register past the cap: exit %d, stderr %q", code, stderr)
	}
	if got := post(a, 5435); !strings.HasSuffix(got, "\n 409") || !strings.Contains(got, `"error": "`+full+`"`) {
		t.Errorf("curl past the cap: %q, want 409 and %q", got, full)
	}
	if out := update(a, 5436); !strings.Contains(out, "update failed: REFUSED") {
		t.Errorf("nsupdate past the cap: %q, want REFUSED", out)
	}
	if got := srv(a); got != two {
		t.Errorf("DNS after the refusals:\n%swant\n%s", got, two)
	}
	deadline := time.Now().Add(5 * time.Second)
	for !strings.Contains(a.stderr.String(), "dns update refused") && time.Now().Before(deadline) {
		time.Sleep(20 * time.Millisecond)
	}
	if logs := a.stderr.String(); !strings.Contains(logs, "dns update refused") || !strings.Contains(logs, full) {
		t.Errorf("no log line for the refused UPDATE:\n%s", logs)
	}
	// Re-registrations replace: accepted at the cap, by each front end.
	if stderr, code := register(a, 5432, "--txt", "v=2"); code != 0 {
		t.Errorf("a re-registration at the cap: %d %s", code, stderr)
	}
	if got := post(a, 5433); !strings.HasSuffix(got, " 201") {
		t.Errorf("curl re-registration at the cap: %q", got)
	}
	if out := update(a, 5433); strings.Contains(out, "failed") {
		t.Errorf("nsupdate of an instance DNS already has, at the cap: %q", out)
	}

	// The cap lowered below what the journal holds: nothing is dropped.
	a.cmd.Process.Kill()
	a.waitExit(t, 10*time.Second)
	b := startServeOn(t, data, "--max-instances", "1")
	if got := srv(b); got != two {
		t.Errorf("DNS after a restart with a lower cap:\n%swant\n%s", got, two)
	}
	if !strings.Contains(b.stderr.String(), "the directory is full") {
		t.Errorf("no warning of a directory past its cap:\n%s", b.stderr)
	}
	if got := dig(t, b.dns, "+short", "_echo._tcp.svc.internal.", "SRV"); !strings.Contains(got, "box.svc.internal.") {
		t.Errorf("the hosted echo after a restart past the cap: %q", got)
	}
	if got := post(b, 5437); !strings.HasSuffix(got, " 409") {
		t.Errorf("curl past a lowered cap: %q", got)
	}
	if stderr, code := register(b, 5433, "--txt", "v=3"); code != 0 {
		t.Errorf("a re-registration past a lowered cap: %d %s", code, stderr)
	}
}
