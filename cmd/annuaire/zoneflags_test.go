package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
)

// TestServeZoneFlags: --ns, --soa-* and --reverse shape every zone
// served, and export with the same flags writes those zones, which the
// zone checkers accept (kzonecheck and named-checkzone want two name
// servers with addresses).
func TestServeZoneFlags(t *testing.T) {
	testenv.NeedTool(t, "dig")
	flags := []string{"--ns", "ns1=127.0.0.1", "--ns", "ns2.svc.internal.=127.0.0.2", "--ns", "ns2=::1",
		"--soa-refresh", "10m", "--soa-retry", "90", "--soa-expire", "2w", "--soa-minimum", "30",
		"--reverse", "127.0.0.0/8", "--reverse", "::/64"}
	a := startServe(t, flags...)
	for _, c := range []struct {
		args string
		want []string
	}{
		{"svc.internal SOA", []string{"SOA ns1.svc.internal. hostmaster.svc.internal. ", " 600 90 1209600 30"}},
		{"svc.internal NS", []string{"NS ns1.svc.internal.", "NS ns2.svc.internal.", "ns1.svc.internal. 10 IN A 127.0.0.1",
			"ns2.svc.internal. 10 IN A 127.0.0.2", "ns2.svc.internal. 10 IN AAAA ::1"}},
		{"127.in-addr.arpa SOA", []string{"status: NOERROR", "SOA ns1.svc.internal. hostmaster.svc.internal. "}},
		{"-x 127.0.0.2", []string{"PTR ns2.svc.internal."}},
		{"-x 127.9.9.9", []string{"status: NXDOMAIN", "127.in-addr.arpa. 30 IN SOA ns1.svc.internal. hostmaster.svc.internal. "}},
		{"0.0.127.in-addr.arpa SOA", []string{"status: NOERROR", "ANSWER: 0", "AUTHORITY: 1"}}, // inside the /8
		{"-x ::1", []string{"PTR ns2.svc.internal."}},
		{"-x 192.0.2.1", []string{"status: REFUSED"}},
	} {
		out := strings.Join(strings.Fields(dig(t, a.dns, append([]string{"+norec"}, strings.Fields(c.args)...)...)), " ")
		for _, want := range c.want {
			if !strings.Contains(out, want) {
				t.Errorf("dig %s lacks %q:\n%s", c.args, want, out)
			}
		}
	}
	a.cmd.Process.Signal(syscall.SIGTERM)
	if code := a.waitExit(t, 10*time.Second); code != 0 {
		t.Fatalf("exit code %d", code)
	}

	out := t.TempDir()
	var stdout, stderr bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	if err := Run(context.Background(), e, append([]string{"export", "--data", a.data, "--dir", out}, flags...)); err != nil {
		t.Fatalf("export: %v\n%s", err, stderr.String())
	}
	files := strings.Fields(stdout.String())
	if len(files) != 3 {
		t.Fatalf("export wrote %v, want the forward zone and two reverse zones", files)
	}
	for _, f := range files {
		text, err := os.ReadFile(f)
		if err != nil {
			t.Fatal(err)
		}
		if !strings.Contains(string(text), " 600 90 1209600 30\n") || !strings.Contains(string(text), "\tNS\tns2.svc.internal.\n") {
			t.Errorf("%s has not the flags' SOA and NS:\n%s", f, text)
		}
		checkZone(t, strings.TrimSuffix(filepath.Base(f), ".zone"), string(text))
	}
}

// TestServeBadZoneFlags: a zone flag that cannot be right is a usage
// error, exit 2, that says why.
func TestServeBadZoneFlags(t *testing.T) {
	for _, c := range []struct {
		args []string
		why  string
	}{
		{[]string{"--reverse", "10.0.0.0/12"}, "/8, /16, /24 or /32"},
		{[]string{"--reverse", "2001:db8::/62"}, "nibble"},
		{[]string{"--reverse", "10.1.0.0/8"}, "host bits"},
		{[]string{"--reverse", "10.0.0.0/8", "--reverse", "10.1.0.0/16"}, "overlap"},
		{[]string{"--reverse", "nonsense"}, "--reverse"},
		{[]string{"--ns", "ns1"}, "needs its address"},
		{[]string{"--ns", "ns.example.net.=192.0.2.1"}, "outside"},
		{[]string{"--ns", "ns1=not-an-ip"}, "not an IP address"},
		{[]string{"--soa-expire", "60"}, "expire 60 must be above refresh 300"},
		{[]string{"--soa-refresh", "0"}, "above 0"},
		{[]string{"--soa-retry", "3x"}, "units"},
		{[]string{"--soa-minimum", "4000w"}, "2147483647"},
	} {
		var stdout, stderr bytes.Buffer
		e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
		// Should a case be taken, it serves on :0 ports, and not for long.
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		err := Run(ctx, e, append([]string{"serve", "--data", t.TempDir(), "--dns", "127.0.0.1:0", "--web", "127.0.0.1:0",
			"--echo", "", "--mail", "", "--telnet", ""}, c.args...))
		cancel()
		if code := exitCode(e, err); code != 2 || !strings.Contains(stderr.String(), c.why) {
			t.Errorf("%v: exit %d, stderr %q: want 2 and %q", c.args, code, stderr.String(), c.why)
		}
	}
}

func TestParseSeconds(t *testing.T) {
	for in, want := range map[string]uint32{"300": 300, "5m": 300, "1h30m": 5400, "1d": 86400, "2w": 1209600, "1W1D": 691200, "90s": 90} {
		if got, err := parseSeconds(in); err != nil || got != want {
			t.Errorf("parseSeconds(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "0", "m", "5", "-5", "5mm", "1y", "0s"} {
		if in == "5" {
			continue
		}
		if got, err := parseSeconds(in); err == nil {
			t.Errorf("parseSeconds(%q) = %d, want an error", in, got)
		}
	}
}
