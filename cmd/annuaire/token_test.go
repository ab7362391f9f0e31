package main

import (
	"regexp"
	"runtime"
	"strings"
	"testing"
)

// TestTokenCommands: the students' tokens made, listed and revoked by the
// command, used by a real "annuaire serve" while it runs, through the
// register and deregister commands.
func TestTokenCommands(t *testing.T) {
	data := t.TempDir()
	noEnv := map[string]string{"HOME": t.TempDir()}
	add := func(args ...string) string {
		t.Helper()
		out, errs, code := runCLI(t, noEnv, append([]string{"token", "add", "--data", data}, args...)...)
		if code != 0 || !regexp.MustCompile(`^[a-z][a-z0-9-]*\.[A-Za-z0-9_-]{43}\n$`).MatchString(out) || !strings.Contains(errs, "it is not shown again") {
			t.Fatalf("token add %v: code %d, stdout %q, stderr %q", args, code, out, errs)
		}
		return strings.TrimSpace(out)
	}
	alice := add("alice")
	a := startServeOn(t, data, "--token-max-instances", "2")
	bob := add("bob", "--max-instances", "1") // while serve runs

	if _, errs, code := runCLI(t, noEnv, "token", "add", "alice", "--data", data); code != 1 || !strings.Contains(errs, "token alice: a token with that name exists") {
		t.Errorf("alice twice: code %d, %q", code, errs)
	}
	if _, errs, code := runCLI(t, noEnv, "token", "add", "Alice!", "--data", data); code != 2 || errs != "annuaire token: NAME \"Alice!\": must start with a lowercase letter\ntry 'annuaire token --help'\n" {
		t.Errorf("bad name: code %d, %q", code, errs)
	}
	out, _, code := runCLI(t, noEnv, "token", "list", "--data", data)
	if code != 0 || !regexp.MustCompile(`^NAME +MAX-INSTANCES +CREATED\nalice +default +\d{4}-\d\d-\d\d \d\d:\d\d:\d\dZ\nbob +1 +`).MatchString(out) {
		t.Errorf("token list: code %d\n%s", code, out)
	}

	as := func(token string) map[string]string {
		return map[string]string{"ANNUAIRE_WEB": a.web, "ANNUAIRE_TOKEN": token, "HOME": noEnv["HOME"]}
	}
	if out, errs, code := runCLI(t, as(alice), "register", "echo-alice", "4000", "--address", "127.0.0.2"); code != 0 || out != "echo-alice-tcp-h-127-0-0-2-4000\n" {
		t.Fatalf("alice registers: code %d, %q, %q", code, out, errs)
	}
	for _, arg := range []string{"echo-alice", "echo-alice-tcp-h-127-0-0-2-4000"} {
		_, errs, code := runCLI(t, as(bob), "deregister", arg)
		if code != 1 || !strings.Contains(errs, `instance "echo-alice-tcp-h-127-0-0-2-4000" belongs to alice, not to bob (HTTP 403)`) {
			t.Errorf("bob deregisters %s: code %d, %q", arg, code, errs)
		}
	}
	if _, errs, code := runCLI(t, as(bob), "register", "echo-alice", "4001", "--address", "127.0.0.3"); code != 1 || !strings.Contains(errs, `service "_echo-alice._tcp" belongs to alice, not to bob (HTTP 403)`) {
		t.Errorf("bob joins alice's service: code %d, %q", code, errs)
	}
	if _, errs, code := runCLI(t, as(bob), "register", "echo-bob", "4001", "--address", "127.0.0.3"); code != 0 {
		t.Errorf("bob registers: code %d, %q", code, errs)
	}
	if _, errs, code := runCLI(t, as(bob), "register", "echo-bob", "4002", "--address", "127.0.0.3"); code != 1 || !strings.Contains(errs, "bob already holds 1 instance, the most its token may (HTTP 403)") {
		t.Errorf("bob's second: code %d, %q", code, errs)
	}

	// The teacher's token, from the data directory, may.
	if out, errs, code := runCLI(t, noEnv, "deregister", "echo-alice", "--web", a.web, "--data", data); code != 0 || out != "echo-alice-tcp-h-127-0-0-2-4000\n" {
		t.Errorf("the teacher deregisters alice's: code %d, %q, %q", code, out, errs)
	}

	if _, errs, code := runCLI(t, noEnv, "token", "revoke", "alice", "--data", data); code != 0 || errs != "token of alice revoked\n" {
		t.Errorf("revoke: code %d, %q", code, errs)
	}
	if _, errs, code := runCLI(t, as(alice), "register", "echo-alice", "4000", "--address", "127.0.0.2"); code != 1 || !strings.Contains(errs, "wrong token: no token alice (revoked, or never made: annuaire token list) (HTTP 401); the token came from $ANNUAIRE_TOKEN\n") {
		t.Errorf("alice after her revocation: code %d, %q", code, errs)
	}
	if _, errs, code := runCLI(t, noEnv, "token", "revoke", "alice", "--data", data); code != 1 || !strings.Contains(errs, "token alice: no token with that name") {
		t.Errorf("revoke twice: code %d, %q", code, errs)
	}
}

func TestTokenBadFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"token"}, "annuaire token: want add NAME, list or revoke NAME\n"},
		{[]string{"token", "frob"}, "annuaire token: unknown \"frob\": want add NAME, list or revoke NAME\n"},
		{[]string{"token", "add"}, "annuaire token: add: want one NAME, got []\n"},
		{[]string{"token", "add", "a", "b"}, "annuaire token: add: want one NAME, got [\"a\" \"b\"]\n"},
		{[]string{"token", "list", "--max-instances", "3"}, "annuaire token: list: --max-instances goes with add\n"},
		{[]string{"token", "add", "a", "--max-instances", "-1"}, "annuaire token: --max-instances -1: want 1 or more, or 0 for serve's default\n"},
		{[]string{"token", "list", "x"}, "annuaire token: list takes no argument, got [\"x\"]\n"},
		{[]string{"token", "revoke"}, "annuaire token: revoke: want one NAME, got []\n"},
		{[]string{"serve", "--token-max-instances", "-1"}, "annuaire serve: --token-max-instances -1: want 0 (no limit) or more\n"},
		{[]string{"serve", "--token-rate", "0"}, "annuaire serve: --token-rate 0: want writes per second, more than 0\n"},
		{[]string{"serve", "--token-rate", "NaN"}, "annuaire serve: --token-rate NaN: want writes per second, more than 0\n"},
	} {
		_, errs, code := runCLI(t, map[string]string{"HOME": t.TempDir()}, tc.args...)
		cmd := tc.args[0]
		if want := tc.want + "try 'annuaire " + cmd + " --help'\n"; code != 2 || errs != want {
			t.Errorf("%v: exit %d, stderr\n%s\nwant exit 2 and\n%s", tc.args, code, errs, want)
		}
	}
}

// TestListenLAN: --listen-lan puts DNS and the web on that address, on
// the ports of --dns and --web, and the banner says loudly what anyone
// who reaches them can do. 127.0.0.2 stands for the room's address.
func TestListenLAN(t *testing.T) {
	if runtime.GOOS != "linux" {
		t.Skip("127.0.0.2 is usable without setup on Linux only")
	}
	data := t.TempDir()
	if _, _, code := runCLI(t, map[string]string{"HOME": t.TempDir()}, "token", "add", "alice", "--data", data); code != 0 {
		t.Fatal("token add")
	}
	a := startServeOn(t, data, "--listen-lan", "127.0.0.2", "--token-max-instances", "5")
	if !strings.HasPrefix(a.dns, "127.0.0.2:") || !strings.HasPrefix(a.web, "127.0.0.2:") {
		t.Fatalf("dns %s, web %s: want both on 127.0.0.2", a.dns, a.web)
	}
	if out := dig(t, a.dns, "+short", "_http._tcp.svc.internal.", "SRV"); !strings.Contains(out, " "+strings.Split(a.web, ":")[1]+" box.svc.internal.") {
		t.Errorf("dig @%s: %q", a.dns, out)
	}
	banner := a.stdout.String()
	for _, want := range []string{
		"!!! --listen-lan 127.0.0.2: annuaire is REACHABLE FROM THE NETWORK !!!\n",
		"    dns   " + a.dns + " ",
		"    web   http://" + a.web + "/ ",
		"      the teacher's   " + data + "/token: any service, and the mail received\n",
		"      a student's     annuaire token add NAME: that student's services only (at most 5 instances, 10 writes/s, names free, first come first served)\n",
		"      DNS UPDATE      refused: no --tsig key\n",
		"    student tokens: alice\n",
		"    students: export ANNUAIRE_SERVER=" + a.dns + " ANNUAIRE_WEB=" + a.web + " ANNUAIRE_TOKEN=...\n",
	} {
		if !strings.Contains(banner, want) {
			t.Errorf("banner lacks %q:\n%s", want, banner)
		}
	}
	if _, errs, code := runCLI(t, nil, "serve", "--listen-lan", "lab-room"); code != 2 || !strings.Contains(errs, `--listen-lan "lab-room" is not an IP address`) {
		t.Errorf("--listen-lan lab-room: exit %d, %q", code, errs)
	}
}
