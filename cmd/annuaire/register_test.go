package main

import (
	"bytes"
	"context"
	"encoding/json"
	"log/slog"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/services/web"
)

// startAPI runs the web API on 127.0.0.1:0 and returns its address and
// registry.
func startAPI(t *testing.T, token string) (string, *registry.Registry) {
	t.Helper()
	reg := registry.New(1)
	s := &web.Server{Registry: reg, Token: token}
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
		case <-done:
		case <-time.After(10 * time.Second):
			t.Error("web server did not stop")
		}
	})
	return ln.Addr().String(), reg
}

// runCLI runs one command in-process with only the given environment.
func runCLI(t *testing.T, envv map[string]string, args ...string) (stdout, stderr string, code int) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(k string) string { return envv[k] }}
	code = exitCode(e, Run(t.Context(), e, args))
	return out.String(), errb.String(), code
}

func TestRegisterCommands(t *testing.T) {
	const token = "cli-test-token"
	addr, reg := startAPI(t, token)
	data := t.TempDir()
	if _, err := web.LoadOrCreateToken(data); err != nil { // not the server's token
		t.Fatal(err)
	}
	envv := map[string]string{"ANNUAIRE_WEB": addr, "ANNUAIRE_TOKEN": token, "HOME": t.TempDir()}
	noToken := map[string]string{"ANNUAIRE_WEB": addr, "HOME": t.TempDir()}

	t.Run("register with defaults", func(t *testing.T) {
		out, errs, code := runCLI(t, envv, "register", "echo", "7007")
		if code != 0 || out != "echo-tcp-h-127-0-0-1-7007\n" {
			t.Fatalf("code %d, stdout %q, stderr %q", code, out, errs)
		}
		if !strings.Contains(errs, "_echo._tcp.svc.internal. SRV 0 0 7007 h-127-0-0-1.svc.internal. → 127.0.0.1:7007") {
			t.Errorf("stderr %q", errs)
		}
	})
	t.Run("register with flags between arguments", func(t *testing.T) {
		out, errs, code := runCLI(t, noToken, "register", "--token", token, "www", "--address", "192.0.2.1",
			"--address", "2001:db8::1", "8080", "--host", "lab", "--txt", "path=/", "--txt", "duplex", "--subtype", "printer", "--priority", "1", "--weight", "5",
			"--check", "tcp", "--check-interval", "1s", "--proto", "tcp")
		if code != 0 || out != "http-tcp-lab-8080\n" {
			t.Fatalf("code %d, stdout %q, stderr %q", code, out, errs)
		}
		inst, ok := reg.Snapshot().Instance("http-tcp-lab-8080")
		if !ok || inst.Priority != 1 || inst.Weight != 5 || !slices.Equal(inst.TXT, registry.TXT{"path=/", "duplex"}) || !slices.Equal(inst.Subtypes, []string{"_printer"}) || inst.Check == nil || inst.Check.Target != "192.0.2.1:8080" {
			t.Errorf("registered %+v", inst)
		}
		if h, ok := reg.Snapshot().Host("lab"); !ok || len(h.Addrs) != 2 {
			t.Errorf("host %+v", h)
		}
	})
	t.Run("register with the token file", func(t *testing.T) {
		out, errs, code := runCLI(t, noToken, "register", "echo", "7007", "--proto", "udp", "--data", data, "--token", "")
		// The file's token is not the server's: refused, the server says
		// why and the CLI which token it sent.
		if code != 1 || out != "" || !strings.Contains(errs, "wrong token (HTTP 401); the token came from "+filepath.Join(data, web.TokenFile)+": ") {
			t.Errorf("code %d, stdout %q, stderr %q", code, out, errs)
		}
		_, errs, _ = runCLI(t, map[string]string{"ANNUAIRE_WEB": addr, "ANNUAIRE_TOKEN": "stale"}, "register", "echo", "7007")
		if !strings.Contains(errs, "wrong token (HTTP 401); the token came from $ANNUAIRE_TOKEN: ") {
			t.Errorf("a wrong $ANNUAIRE_TOKEN: stderr %q", errs)
		}
	})
	t.Run("register with the server's token file", func(t *testing.T) {
		dir := t.TempDir()
		if err := os.WriteFile(filepath.Join(dir, web.TokenFile), []byte(token+"\n"), 0o600); err != nil {
			t.Fatal(err)
		}
		out, errs, code := runCLI(t, noToken, "register", "daytime", "--data", dir)
		if code != 0 || out != "daytime-tcp-h-127-0-0-1-13\n" {
			t.Fatalf("code %d, stdout %q, stderr %q", code, out, errs)
		}
		if _, _, code := runCLI(t, noToken, "deregister", "daytime", "--data", dir); code != 0 {
			t.Errorf("deregister with the token file: %d", code)
		}
	})
	t.Run("register without any token", func(t *testing.T) {
		_, errs, code := runCLI(t, noToken, "register", "echo", "--data", t.TempDir())
		if code != 1 || !strings.Contains(errs, "no API token") {
			t.Errorf("code %d, stderr %q", code, errs)
		}
	})
	for _, tc := range []struct {
		name string
		args []string
		code int
		want string
	}{
		{"server rejects a field", []string{"register", "nosuchservice"}, 1, `invalid port "": required`},
		{"server rejects the host", []string{"register", "echo", "7", "--host", "a..b"}, 1, "invalid host"},
		{"bad port", []string{"register", "echo", "seven"}, 2, "not a number"},
		{"bad flag", []string{"register", "echo", "--colour", "blue"}, 2, "unknown flag --colour"},
		{"no name", []string{"register"}, 2, "want NAME [PORT]"},
		{"check target without check", []string{"register", "echo", "--check-target", "x:1"}, 2, "need --check"},
		{"deregister two args", []string{"deregister", "a", "b"}, 2, "want one ID or NAME"},
		{"list argument", []string{"list", "extra"}, 2, "unexpected argument"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			_, errs, code := runCLI(t, envv, tc.args...)
			if code != tc.code || !strings.Contains(errs, tc.want) {
				t.Errorf("code %d (want %d), stderr %q (want %q)", code, tc.code, errs, tc.want)
			}
		})
	}

	t.Run("list", func(t *testing.T) {
		out, errs, code := runCLI(t, noToken, "list")
		if code != 0 {
			t.Fatalf("code %d: %s", code, errs)
		}
		lines := strings.Split(strings.TrimSpace(out), "\n")
		if len(lines) != 3 || !strings.HasPrefix(lines[0], "NAME") {
			t.Fatalf("table:\n%s", out)
		}
		for _, want := range []string{"echo", "tcp", "h-127-0-0-1.svc.internal.", "127.0.0.1", "7007", "passing", "echo-tcp-h-127-0-0-1-7007"} {
			if !strings.Contains(out, want) {
				t.Errorf("table lacks %q:\n%s", want, out)
			}
		}
		if !strings.Contains(out, "192.0.2.1,2001:db8::1") {
			t.Errorf("table lacks the addresses of lab:\n%s", out)
		}
	})
	t.Run("list --json", func(t *testing.T) {
		out, _, code := runCLI(t, noToken, "list", "--json")
		var list []map[string]any
		if code != 0 || json.Unmarshal([]byte(out), &list) != nil || len(list) != 2 {
			t.Fatalf("code %d:\n%s", code, out)
		}
	})

	t.Run("deregister by name", func(t *testing.T) {
		if _, errs, code := runCLI(t, envv, "register", "echo", "7007", "--proto", "udp"); code != 0 {
			t.Fatal(errs)
		}
		before := reg.Snapshot().Serial()
		_, errs, code := runCLI(t, envv, "deregister", "echo")
		if code != 1 || !strings.Contains(errs, "names 2 instances") || !strings.Contains(errs, "echo-udp-h-127-0-0-1-7007") {
			t.Errorf("ambiguous name: code %d, stderr %q", code, errs)
		}
		if reg.Snapshot().Serial() != before {
			t.Errorf("an ambiguous deregister changed the registry")
		}
		out, errs, code := runCLI(t, envv, "deregister", "--all", "echo")
		if code != 0 || out != "echo-tcp-h-127-0-0-1-7007\necho-udp-h-127-0-0-1-7007\n" {
			t.Errorf("--all: code %d, stdout %q, stderr %q", code, out, errs)
		}
		// "www" is an alias of http, and names a single instance.
		out, errs, code = runCLI(t, envv, "deregister", "www")
		if code != 0 || out != "http-tcp-lab-8080\n" {
			t.Errorf("alias: code %d, stdout %q, stderr %q", code, out, errs)
		}
		if out, _, _ := runCLI(t, envv, "list"); out != "no services registered\n" {
			t.Errorf("list after deregister: %q", out)
		}
	})
	t.Run("deregister by id", func(t *testing.T) {
		runCLI(t, envv, "register", "echo", "7")
		out, errs, code := runCLI(t, envv, "deregister", "echo-tcp-h-127-0-0-1-7")
		if code != 0 || out != "echo-tcp-h-127-0-0-1-7\n" {
			t.Errorf("code %d, stdout %q, stderr %q", code, out, errs)
		}
		_, errs, code = runCLI(t, envv, "deregister", "echo-tcp-h-127-0-0-1-7")
		if code != 1 || !strings.Contains(errs, "no instance has id or service name") {
			t.Errorf("again: code %d, stderr %q", code, errs)
		}
	})
	t.Run("server not running", func(t *testing.T) {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		closed := ln.Addr().String()
		ln.Close()
		_, errs, code := runCLI(t, envv, "list", "--web", closed)
		if code != 1 || !strings.Contains(errs, "cannot reach annuaire's API at http://"+closed) {
			t.Errorf("code %d, stderr %q", code, errs)
		}
	})
}

// register of an instance whose check fails at once says so, with the
// server's reason, instead of a plain "registered".
func TestRegisterCritical(t *testing.T) {
	const token = "cli-test-token"
	reg := registry.New(1)
	checker := &registry.Checker{Registry: reg, Logger: slog.New(slog.DiscardHandler)}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- checker.Run(ctx) }()
	t.Cleanup(func() { cancel(); <-done })
	s := &web.Server{Registry: reg, Token: token, LastCheck: checker.Result}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	served := make(chan error, 1)
	go func() { served <- s.Serve(ctx, ln) }()
	t.Cleanup(func() { cancel(); <-served })
	envv := map[string]string{"ANNUAIRE_WEB": ln.Addr().String(), "ANNUAIRE_TOKEN": token}

	dead := deadAddr(t)
	out, errs, code := runCLI(t, envv, "register", "ghost", "9", "--address", "127.0.0.1", "--check", "tcp", "--check-target", dead)
	want := "registered, but critical: dial tcp " + dead + ": connect: connection refused; DNS leaves _ghost._tcp.svc.internal. SRV 0 0 9 h-127-0-0-1.svc.internal. out until its tcp check passes\n"
	if code != 0 || out != "ghost-tcp-h-127-0-0-1-9\n" || errs != want {
		t.Errorf("exit %d, stdout %q, stderr\n%s\nwant\n%s", code, out, errs, want)
	}

	alive := ln.Addr().String()
	_, errs, code = runCLI(t, envv, "register", "web2", "8080", "--address", "127.0.0.1", "--check", "tcp", "--check-target", alive)
	want = "registered _web2._tcp.svc.internal. SRV 0 0 8080 h-127-0-0-1.svc.internal. → 127.0.0.1:8080; tcp connect to " + alive + " succeeded\n"
	if code != 0 || errs != want {
		t.Errorf("a passing check: exit %d, stderr\n%s\nwant\n%s", code, errs, want)
	}
}
