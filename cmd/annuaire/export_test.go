package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/authority"
	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/internal/testenv"
	"github.com/annuaire/annuaire/registry"
)

const exportKey = "hmac-sha256:xfr:c2VjcmV0LXNlY3JldC1zZWNyZXQtc2VjcmV0LXNlY3JldA=="

// exportRegistry fills reg as annuaire serve would: the NS host and an
// echo instance; and an instance whose name has the punctuation DNS-SD
// names carry ("Alice's", "Salle 2, étage"), which RFC 1035 section 5.1
// lets a master file write as it is but Knot's parser (kzonecheck,
// knotd) reads only escaped.
func exportRegistry(t *testing.T, reg *registry.Registry) {
	t.Helper()
	_, err := reg.Update(func(tx *registry.Tx) error {
		if err := tx.PutHost(registry.Host{Name: "ns", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}, TTL: registry.DefaultTTL}); err != nil {
			return err
		}
		if _, err := tx.Register(registry.Registration{Service: "ipp", Host: "printer", Port: new(631), Instance: "Alice's printer, salle 2 <étage> #1 = C++ & co!",
			Subtypes: []string{"_color+a4"}, Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.2")}}); err != nil {
			return err
		}
		_, err := tx.Register(registry.Registration{Service: "echo", Host: "host", Port: new(7007), Instance: "My echo", Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
		return err
	})
	if err != nil {
		t.Fatal(err)
	}
}

// exportRun runs "annuaire export args..." in-process.
func exportRun(t *testing.T, args ...string) (stdout, stderr string, err error) {
	t.Helper()
	var out, errb bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &out, stderr: &errb, getenv: func(string) string { return "" }}
	err = Run(context.Background(), e, append([]string{"export"}, args...))
	return out.String(), errb.String(), err
}

// checkZone runs named-checkzone and kzonecheck on a master file of the
// zone origin.
func checkZone(t *testing.T, origin, text string) {
	t.Helper()
	file := filepath.Join(t.TempDir(), "zone")
	if err := os.WriteFile(file, []byte(text), 0o600); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command(testenv.NeedTool(t, "named-checkzone"), origin, file).CombinedOutput(); err != nil {
		t.Errorf("named-checkzone %s: %v\n%s\n%s", origin, err, out, text)
	}
	if out, err := exec.Command(testenv.NeedTool(t, "kzonecheck"), "-o", origin, file).CombinedOutput(); err != nil {
		t.Errorf("kzonecheck %s: %v\n%s\n%s", origin, err, out, text)
	}
}

func checkExport(t *testing.T, out string) {
	t.Helper()
	lines := strings.Split(out, "\n")
	if len(lines) < 4 || lines[1] != "$ORIGIN svc.internal." || !strings.HasPrefix(lines[2], "$TTL ") || !strings.Contains(lines[3], "\tSOA\t") {
		t.Errorf("export does not start with $ORIGIN, $TTL and the SOA:\n%s", out)
	}
	for _, want := range []string{"_echo._tcp.svc.internal.\t10\tIN\tSRV\t0 0 7007 host.svc.internal.", `My\ echo._echo._tcp.svc.internal.`} {
		if !strings.Contains(out, want) {
			t.Errorf("export lacks %q:\n%s", want, out)
		}
	}
	if strings.Count(out, "\tSOA\t") != 1 {
		t.Errorf("export has %d SOA records, want 1", strings.Count(out, "\tSOA\t"))
	}
	checkZone(t, "svc.internal.", out)
}

func TestExportServer(t *testing.T) {
	reg := registry.New(1)
	exportRegistry(t, reg)
	key, err := tsig.ParseKey(exportKey)
	if err != nil {
		t.Fatal(err)
	}
	s := &authority.Server{Registry: reg, Keys: []tsig.Key{key}, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { s.Serve(ctx, ln); close(done) }()
	t.Cleanup(func() { cancel(); <-done })

	t.Run("OK", func(t *testing.T) {
		out, stderr, err := exportRun(t, "--server", ln.Addr().String(), "--tsig", exportKey)
		if err != nil {
			t.Fatalf("export: %v\n%s", err, stderr)
		}
		checkExport(t, out)

		// --json holds the same records, the first line's figures as fields.
		js, stderr, err := exportRun(t, "--server", ln.Addr().String(), "--json", "--tsig", exportKey)
		var z zoneJSON
		if err != nil || json.Unmarshal([]byte(js), &z) != nil {
			t.Fatalf("export --json: %v\n%s%s", err, js, stderr)
		}
		want := fmt.Sprintf("; zone %s serial %d, %d records, exported by annuaire\n", z.Zone, z.Serial, z.Count)
		if !strings.HasPrefix(out, want) || len(z.Records) != z.Count || z.Records[0].Type != "SOA" {
			t.Errorf("export --json: %s, %d records\nwant the figures of %q", z.Zone, len(z.Records), want)
		}
		for _, r := range z.Records {
			if line := fmt.Sprintf("%s\t%d\tIN\t%s\t%s\n", r.Name, r.TTL, r.Type, r.Data); !strings.Contains(out, line) {
				t.Errorf("export --json has %q, the master file does not", line)
			}
		}
	})
	t.Run("every zone", func(t *testing.T) {
		out := t.TempDir()
		stdout, stderr, err := exportRun(t, "--server", ln.Addr().String(), "--tsig", exportKey, "--dir", out)
		if err != nil {
			t.Fatalf("export: %v\n%s", err, stderr)
		}
		if files := strings.Fields(stdout); len(files) != 2 || files[1] != filepath.Join(out, "0.0.127.in-addr.arpa.zone") {
			t.Fatalf("export --server --dir wrote %v", files)
		}
		text, _ := os.ReadFile(filepath.Join(out, "0.0.127.in-addr.arpa.zone"))
		checkZone(t, "0.0.127.in-addr.arpa.", string(text))
	})
	t.Run("ErrNoKey", func(t *testing.T) {
		if _, _, err := exportRun(t, "--server", ln.Addr().String()); err == nil || !strings.Contains(err.Error(), "REFUSED") {
			t.Fatalf("export without a key: %v, want REFUSED", err)
		}
	})
}

func TestExportData(t *testing.T) {
	dir := t.TempDir()
	reg, err := registry.Open(dir, registry.Options{Logger: slog.New(slog.NewTextHandler(io.Discard, nil))})
	if err != nil {
		t.Fatal(err)
	}
	exportRegistry(t, reg)

	t.Run("ErrInUse", func(t *testing.T) {
		_, _, err := exportRun(t, "--data", dir)
		if !errors.Is(err, registry.ErrLocked) || !strings.Contains(err.Error(), "--server") {
			t.Fatalf("export of a directory in use: %v, want ErrLocked and a hint to use --server", err)
		}
	})
	if err := reg.Close(); err != nil {
		t.Fatal(err)
	}
	t.Run("OK", func(t *testing.T) {
		out, stderr, err := exportRun(t, "--data", dir)
		if err != nil {
			t.Fatalf("export: %v\n%s", err, stderr)
		}
		checkExport(t, out)
	})
	t.Run("every zone", func(t *testing.T) {
		out := t.TempDir()
		stdout, stderr, err := exportRun(t, "--data", dir, "--dir", filepath.Join(out, "new"))
		if err != nil {
			t.Fatalf("export: %v\n%s", err, stderr)
		}
		files := strings.Fields(stdout)
		want := []string{filepath.Join(out, "new", "svc.internal.zone"), filepath.Join(out, "new", "0.0.127.in-addr.arpa.zone")}
		if !slices.Equal(files, want) {
			t.Fatalf("export --dir wrote %v, want %v", files, want)
		}
		for _, f := range files {
			text, err := os.ReadFile(f)
			if err != nil {
				t.Fatal(err)
			}
			checkZone(t, strings.TrimSuffix(filepath.Base(f), ".zone"), string(text))
		}
		rev, _ := os.ReadFile(files[1])
		for _, want := range []string{"1.0.0.127.in-addr.arpa.\t10\tIN\tPTR\thost.svc.internal.", "1.0.0.127.in-addr.arpa.\t10\tIN\tPTR\tns.svc.internal.",
			"0.0.127.in-addr.arpa.\t60\tIN\tNS\tns.svc.internal.", "b._dns-sd._udp.0.0.0.127.in-addr.arpa.\t60\tIN\tPTR\tsvc.internal."} {
			if !strings.Contains(string(rev), want) {
				t.Errorf("the reverse zone lacks %q:\n%s", want, rev)
			}
		}
	})
	t.Run("one reverse zone", func(t *testing.T) {
		stdout, stderr, err := exportRun(t, "--data", dir, "0.0.127.IN-ADDR.ARPA")
		if err != nil {
			t.Fatalf("export: %v\n%s", err, stderr)
		}
		if !strings.HasPrefix(stdout, "; zone 0.0.127.in-addr.arpa. serial ") {
			t.Errorf("export of the reverse zone:\n%s", stdout)
		}
		checkZone(t, "0.0.127.in-addr.arpa.", stdout)
	})
	t.Run("ErrNotAZone", func(t *testing.T) {
		_, _, err := exportRun(t, "--data", dir, "0.0.10.in-addr.arpa.")
		if err == nil || !strings.Contains(err.Error(), "not a zone held") || !strings.Contains(err.Error(), "0.0.127.in-addr.arpa.") {
			t.Fatalf("export of a zone not held: %v", err)
		}
	})
	t.Run("ErrNoDir", func(t *testing.T) {
		if _, _, err := exportRun(t, "--data", filepath.Join(dir, "missing")); err == nil {
			t.Fatal("export of a missing directory succeeded")
		}
	})
	t.Run("ErrUsage", func(t *testing.T) {
		_, _, err := exportRun(t, "--data", dir, "--server", "127.0.0.1:1")
		var u usageError
		if !errors.As(err, &u) {
			t.Fatalf("--data with --server: %v, want a usage error", err)
		}
	})
}
