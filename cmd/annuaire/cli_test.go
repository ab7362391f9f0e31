package main

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"runtime"
	"runtime/debug"
	"slices"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
)

// visible is every command a user may type.
func visible() []subcommand {
	var out []subcommand
	for _, c := range commands() {
		if !c.hidden {
			out = append(out, c)
		}
	}
	return out
}

// Every command has a help page on stdout, exit 0, the same by --help,
// -h and "help CMD", with a synopsis, its flags and an example.
func TestHelpPages(t *testing.T) {
	for _, c := range visible() {
		t.Run(c.name, func(t *testing.T) {
			page, errs, code := runCLI(t, nil, c.name, "--help")
			if code != 0 || errs != "" {
				t.Fatalf("--help: exit %d, stderr %q", code, errs)
			}
			for _, want := range []string{
				"annuaire " + c.name + " — " + c.summary + "\n",
				"\nUsage: annuaire " + c.name,
				"\nExample:\n  $ ",
			} {
				if !strings.Contains(page, want) {
					t.Errorf("--help lacks %q:\n%s", want, page)
				}
			}
			for _, args := range [][]string{{c.name, "-h"}, {"help", c.name}, {c.name, "x", "--help"}} {
				out, errs, code := runCLI(t, nil, args...)
				if code != 0 || errs != "" || out != page {
					t.Errorf("%q: exit %d, stderr %q, page differs: %v", args, code, errs, out != page)
				}
			}
		})
	}
	for _, args := range [][]string{{"--help"}, {"-h"}, {"help"}} {
		out, errs, code := runCLI(t, nil, args...)
		if code != 0 || errs != "" {
			t.Errorf("%q: exit %d, stderr %q", args, code, errs)
		}
		for _, c := range visible() {
			if !strings.Contains(out, "\n  "+c.name+" ") {
				t.Errorf("%q does not list %s:\n%s", args, c.name, out)
			}
		}
	}
}

// A bad command line prints the one line that is wrong and where to read
// more, exit 2, and nothing on stdout.
func TestBadCommandLines(t *testing.T) {
	dir := t.TempDir()
	type tc struct {
		args []string
		want string
	}
	cases := []tc{
		{[]string{"frobnicate"}, "annuaire: unknown command \"frobnicate\"\ntry 'annuaire --help'\n"},
		{[]string{"help", "frobnicate"}, "annuaire help: no command \"frobnicate\"\ntry 'annuaire help --help'\n"},
		{[]string{"register", "--proto", "sctp", "db"}, "annuaire register: --proto: value \"sctp\": want tcp or udp\ntry 'annuaire register --help'\n"},
		{[]string{"register", "db", "99999"}, "annuaire register: PORT \"99999\" is not a number from 1 to 65535\ntry 'annuaire register --help'\n"},
		{[]string{"stop", "--timeout", "soon"}, "annuaire stop: --timeout: value \"soon\": want a duration such as 15s or 500ms\ntry 'annuaire stop --help'\n"},
		{[]string{"stop", "--data"}, "annuaire stop: --data needs a value\ntry 'annuaire stop --help'\n"},
		{[]string{"lookup", "--json=maybe", "echo"}, "annuaire lookup: --json: boolean value \"maybe\": want true or false\ntry 'annuaire lookup --help'\n"},
		{[]string{"export", "--data", dir, "--server", "127.0.0.1:1"}, "annuaire export: --data and --server exclude each other: read a stopped server's directory, or ask a running one\ntry 'annuaire export --help'\n"},
		{[]string{"completion", "tcsh"}, "annuaire completion: no completion for \"tcsh\": want bash, zsh or fish\ntry 'annuaire completion --help'\n"},
	}
	for _, c := range visible() {
		cases = append(cases, tc{[]string{c.name, "--bogus"}, "annuaire " + c.name + ": unknown flag --bogus\ntry 'annuaire " + c.name + " --help'\n"})
	}
	for _, tc := range cases {
		out, errs, code := runCLI(t, map[string]string{"HOME": dir}, tc.args...)
		if code != 2 || out != "" || errs != tc.want {
			t.Errorf("%q: exit %d, stdout %q, stderr\n%s\nwant exit 2 and\n%s", tc.args, code, out, errs, tc.want)
		}
	}
}

// Flags go before or after the arguments, and "--" ends them.
func TestFlagsAfterArguments(t *testing.T) {
	port := startEcho(t)
	server := startZoneDNS(t, echoZone(port))

	out, errs, code := runCLI(t, nil, "lookup", "echo", "--json", "--server", server)
	var c struct{ Candidates []struct{ Port int } }
	if err := json.Unmarshal([]byte(out), &c); code != 0 || err != nil || len(c.Candidates) == 0 || c.Candidates[0].Port != port {
		t.Errorf("lookup echo --json --server: exit %d, %v\n%s%s", code, err, out, errs)
	}

	out, errs, code = run(t, "bonjour\n", nil, "dial", "echo", "--trace", "--server", server)
	if code != 0 || out != "bonjour\n" || !strings.Contains(errs, "connected: local ") {
		t.Errorf("dial echo --trace --server: exit %d, stdout %q\n%s", code, out, errs)
	}

	// After "--", "--json" is the NAME.
	_, errs, code = runCLI(t, nil, "lookup", "--server", server, "--", "--json")
	if code != 1 || !strings.Contains(errs, "--json") {
		t.Errorf("lookup -- --json: exit %d\n%s", code, errs)
	}

	out, errs, code = runCLI(t, nil, "help", "stop", "--bogus")
	if code != 2 || out != "" || !strings.Contains(errs, "unknown flag --bogus") {
		t.Errorf("help stop --bogus: exit %d\n%s%s", code, out, errs)
	}
}

func TestVersion(t *testing.T) {
	for _, args := range [][]string{{"--version"}, {"version"}} {
		out, errs, code := runCLI(t, nil, args...)
		want := " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH + "\n"
		if code != 0 || errs != "" || !strings.HasPrefix(out, "annuaire ") || !strings.HasSuffix(out, want) {
			t.Errorf("%q: exit %d, stdout %q, stderr %q", args, code, out, errs)
		}
	}
	bi := &debug.BuildInfo{Main: debug.Module{Version: "v0.0.0-20261204192431-4ca87be96074+dirty"}, Settings: []debug.BuildSetting{
		{Key: "vcs.revision", Value: "4ca87be96074f86c012d074b6dd17b5740df10c2"},
		{Key: "vcs.time", Value: "2026-12-04T19:24:31Z"},
		{Key: "vcs.modified", Value: "true"},
	}}
	want := "annuaire v0.0.0-20261204192431-4ca87be96074+dirty (revision 4ca87be96074, 2026-12-04T19:24:31Z) " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
	if got := versionLine(bi); got != want {
		t.Errorf("versionLine:\n got %s\nwant %s", got, want)
	}
	bi.Main.Version = "(devel)" // before Go 1.24, or with -buildvcs=false
	if got := versionLine(bi); !strings.HasPrefix(got, "annuaire (devel) (revision 4ca87be96074+dirty, ") {
		t.Errorf("versionLine without a version: %s", got)
	}
}

// stop of a directory no server holds succeeds, as systemctl stop of a
// stopped unit does; a directory that does not exist is an error.
func TestStopNotRunning(t *testing.T) {
	dir := t.TempDir()
	out, errs, code := runCLI(t, nil, "stop", "--data", dir)
	if code != 0 || out != "not running: no annuaire serves "+dir+"\n" || errs != "" {
		t.Errorf("stop of a stopped server: exit %d, stdout %q, stderr %q", code, out, errs)
	}
	missing := filepath.Join(dir, "missing")
	out, errs, code = runCLI(t, nil, "stop", "--data", missing)
	want := "annuaire: stop: data directory " + missing + " does not exist: --data names the directory the server was started with\n"
	if code != 1 || out != "" || errs != want {
		t.Errorf("stop of a missing directory: exit %d, stdout %q, stderr %q; want 1 and %q", code, out, errs, want)
	}
}

// Without a server, lookup and dial say where they looked and how to say
// where it is, as the API commands do.
func TestNoServerHints(t *testing.T) {
	dead := deadAddr(t)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"lookup", "--server", dead, "echo"}, "; is `annuaire serve` running? --server or ANNUAIRE_SERVER says where\n"},
		{[]string{"dial", "--server", dead, "echo"}, "; is `annuaire serve` running? --server or ANNUAIRE_SERVER says where\n"},
		{[]string{"list", "--web", dead}, "; is `annuaire serve` running? --web or ANNUAIRE_WEB says where\n"},
	} {
		_, errs, code := runCLI(t, nil, tc.args...)
		if code != 1 || !strings.HasSuffix(errs, tc.want) || !strings.Contains(errs, dead) {
			t.Errorf("%q: exit %d, stderr %q; want 1 and a line ending %q", tc.args, code, errs, tc.want)
		}
	}
}

// deadAddr is a loopback address where nothing listens, on TCP or UDP.
func deadAddr(t *testing.T) string {
	t.Helper()
	pc, err := net.ListenPacket("udp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := pc.LocalAddr().String()
	pc.Close()
	return addr
}

// completionScript writes annuaire's completion script for shell to a file.
func completionScript(t *testing.T, shell string) string {
	t.Helper()
	out, errs, code := runCLI(t, map[string]string{"HOME": "/home/alice"}, "completion", shell)
	if code != 0 {
		t.Fatalf("completion %s: exit %d\n%s", shell, code, errs)
	}
	path := filepath.Join(t.TempDir(), "annuaire."+shell)
	if err := os.WriteFile(path, []byte(out), 0o644); err != nil {
		t.Fatal(err)
	}
	return path
}

// completionDirs makes DIR/lab-a and DIR/lab-b, and a file DIR/lab-file
// that a directory completion must not offer.
func completionDirs(t *testing.T) string {
	dir := t.TempDir()
	for _, d := range []string{"lab-a", "lab-b"} {
		if err := os.Mkdir(filepath.Join(dir, d), 0o755); err != nil {
			t.Fatal(err)
		}
	}
	if err := os.WriteFile(filepath.Join(dir, "lab-file"), nil, 0o644); err != nil {
		t.Fatal(err)
	}
	return dir
}

// completionCases are command lines being typed (the last word is the one
// completed) and what a shell offers for them, sorted.
func completionCases(dir string) []struct {
	words []string
	want  []string
} {
	all := []string{}
	for _, c := range visible() {
		all = append(all, c.name)
	}
	slices.Sort(all)
	return []struct {
		words []string
		want  []string
	}{
		{[]string{"annuaire", "lo"}, []string{"lookup"}},
		{[]string{"annuaire", "lookup", "--"}, []string{"--help", "--json", "--server", "--zone"}},
		{[]string{"annuaire", "lookup", "echo", "--j"}, []string{"--json"}},
		{[]string{"annuaire", "stop", "--t"}, []string{"--timeout"}},
		{[]string{"annuaire", "register", "db", "--proto", ""}, []string{"tcp", "udp"}},
		{[]string{"annuaire", "register", "--check", "t"}, []string{"tcp", "ttl"}},
		{[]string{"annuaire", "stop", "--data", dir + "/lab"}, []string{dir + "/lab-a", dir + "/lab-b"}},
		{[]string{"annuaire", "help", "re"}, []string{"register", "repair"}},
		{[]string{"annuaire", "completion", ""}, []string{"bash", "fish", "zsh"}},
	}
}

// TestCompletionBash sources the script in a real bash and calls its
// function as bash's programmable completion does, with COMP_WORDS and
// COMP_CWORD.
func TestCompletionBash(t *testing.T) {
	bash := testenv.NeedTool(t, "bash")
	script := completionScript(t, "bash")
	dir := completionDirs(t)
	cases := completionCases(dir)
	cases = append(cases,
		struct {
			words []string
			want  []string
		}{[]string{"annuaire", "stop", ""}, []string{"--data", "--help", "--timeout"}}, // no arguments: the flags at once
		struct {
			words []string
			want  []string
		}{[]string{"annuaire", "lookup", ""}, nil}, // a NAME to type
		struct {
			words []string
			want  []string
		}{[]string{"annuaire", "lookup", "--server", ""}, nil}, // a value to type
		struct {
			words []string
			want  []string
		}{[]string{"annuaire", "stop", "--data", "=", dir + "/lab-"}, []string{dir + "/lab-a", dir + "/lab-b"}}, // --data=DIR, split at "=" by bash
	)
	var driver strings.Builder
	fmt.Fprintf(&driver, "source %q\ncomplete -p annuaire\n", script)
	for _, tc := range cases {
		driver.WriteString("COMP_WORDS=(")
		for _, w := range tc.words {
			fmt.Fprintf(&driver, " %q", w)
		}
		fmt.Fprintf(&driver, " ); COMP_CWORD=%d; COMPREPLY=(); _annuaire; printf '%%s\\n' ${#COMPREPLY[@]} \"${COMPREPLY[@]}\"\n", len(tc.words)-1)
	}
	out, err := exec.Command(bash, "--norc", "--noprofile", "-c", driver.String()).CombinedOutput()
	if err != nil {
		t.Fatalf("bash: %v\n%s", err, out)
	}
	lines := strings.Split(string(out), "\n")
	if lines[0] != "complete -F _annuaire annuaire" {
		t.Errorf("complete -p annuaire: %q", lines[0])
	}
	lines = lines[1:]
	for _, tc := range cases {
		var n int
		if _, err := fmt.Sscan(lines[0], &n); err != nil || len(lines) < n+1 {
			t.Fatalf("%q: unreadable output %q", tc.words, lines)
		}
		got := slices.Sorted(slices.Values(lines[1 : n+1]))
		lines = lines[n+1:]
		if !slices.Equal(got, tc.want) {
			t.Errorf("%q: bash offers %q, want %q", tc.words, got, tc.want)
		}
	}
}

// TestCompletionFish asks a real fish what it completes (complete -C).
func TestCompletionFish(t *testing.T) {
	fish := testenv.NeedTool(t, "fish")
	script := completionScript(t, "fish")
	dir := completionDirs(t)
	var wg sync.WaitGroup
	for _, tc := range completionCases(dir) {
		wg.Go(func() {
			line := strings.Join(tc.words[1:], " ")
			cmd := exec.Command(fish, "--no-config", "-c", fmt.Sprintf("source %s; complete -C %s", fishQuote(script), fishQuote("annuaire "+line)))
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("%q: fish: %v\n%s", tc.words, err, out)
				return
			}
			var got []string
			for l := range strings.Lines(string(out)) {
				cand, _, _ := strings.Cut(strings.TrimSuffix(l, "\n"), "\t")
				got = append(got, strings.TrimSuffix(cand, "/"))
			}
			slices.Sort(got)
			if !slices.Equal(got, tc.want) {
				t.Errorf("%q: fish offers %q, want %q", tc.words, got, tc.want)
			}
		})
	}
	wg.Wait()
}

func fishQuote(s string) string { return "'" + strings.ReplaceAll(s, "'", `\'`) + "'" }

// zshDriver runs an interactive zsh in a pseudo-terminal (zpty), loads
// compsys and the script, types a line and a TAB, and prints each match
// the completion adds (compadd is wrapped to print them too).
const zshDriver = `
zmodload zsh/zpty
zpty z zsh -f -i
zpty -w z 'autoload -U compinit && compinit -u -D && print "<re""ady>"'
while zpty -r z line; do [[ $line == '<ready>'* ]] && break; done
zpty -w z "source ${(q)1}; bindkey '^I' complete-word; comppostfuncs=(exit)"
zpty -w z 'compadd() { if [[ ${@[1,(i)(-|--)]} == *-(O|A|D)\ * ]]; then builtin compadd "$@"; return; fi; local -a hits; builtin compadd -O hits "$@"; builtin compadd "$@"; (( $#hits )) && print -rl -- "" "<m>"${^hits}; }'
zpty -w -n z "$2"$'\t'
while zpty -r z line; do
	[[ $line == '<m>'* ]] && print -r -- "${${line#<m>}%$'\r'*}"
done
zpty -d z
`

// TestCompletionZsh types each line into a real interactive zsh with the
// script loaded and reads what its completion offers.
func TestCompletionZsh(t *testing.T) {
	zsh := testenv.NeedTool(t, "zsh")
	script := completionScript(t, "zsh")
	if out, err := exec.Command(zsh, "-n", script).CombinedOutput(); err != nil {
		t.Fatalf("zsh -n: %v\n%s", err, out)
	}
	driver := filepath.Join(t.TempDir(), "driver.zsh")
	if err := os.WriteFile(driver, []byte(zshDriver), 0o644); err != nil {
		t.Fatal(err)
	}
	dir := completionDirs(t)
	var wg sync.WaitGroup
	for _, tc := range completionCases(dir) {
		wg.Go(func() {
			cmd := exec.CommandContext(t.Context(), zsh, "-f", driver, script, strings.Join(tc.words, " "))
			cmd.Env = append(os.Environ(), "TERM=dumb")
			cmd.WaitDelay = time.Second
			out, err := cmd.CombinedOutput()
			if err != nil {
				t.Errorf("%q: zsh: %v\n%s", tc.words, err, out)
				return
			}
			got := strings.Fields(string(out))
			slices.Sort(got)
			got = slices.Compact(got) // compsys may add a match under two tags
			want := tc.want
			if strings.HasPrefix(tc.words[len(tc.words)-1], dir) { // zsh completes a path one component at a time
				want = []string{"lab-a", "lab-b"}
			}
			if !slices.Equal(got, want) {
				t.Errorf("%q: zsh offers %q, want %q", tc.words, got, want)
			}
		})
	}
	wg.Wait()
}

// A second serve on a data directory in use says whose it is and what to
// do about it.
func TestServeDataInUse(t *testing.T) {
	a := startServe(t)
	out, err := command(t, "serve", "--data", a.data, "--dns", "127.0.0.1:0", "--web", "127.0.0.1:0",
		"--echo", "", "--mail", "", "--telnet", "").CombinedOutput()
	want := fmt.Sprintf("annuaire: data directory %s is in use by pid %d: stop it with annuaire stop --data %s, or give this one another --data\n",
		a.data, a.cmd.Process.Pid, a.data)
	if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 || string(out) != want {
		t.Errorf("exit %v, output\n%s\nwant exit 1 and\n%s", err, out, want)
	}
}

// Against a real serve: register of an instance whose check fails at
// once says so, with the reason its checker found.
func TestServeRegisterCritical(t *testing.T) {
	a := startServe(t)
	dead := deadAddr(t)
	out, errs, code := runCLI(t, map[string]string{"ANNUAIRE_WEB": a.web},
		"register", "ghost", "9", "--data", a.data, "--address", "127.0.0.1", "--check", "tcp", "--check-target", dead)
	want := "registered, but critical: dial tcp " + dead + ": connect: connection refused; DNS leaves _ghost._tcp.svc.internal. SRV 0 0 9 h-127-0-0-1.svc.internal. out until its tcp check passes\n"
	if code != 0 || out != "ghost-tcp-h-127-0-0-1-9\n" || errs != want {
		t.Errorf("exit %d, stdout %q, stderr\n%s\nwant\n%s", code, out, errs, want)
	}
}
