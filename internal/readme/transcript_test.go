package readme

import (
	"fmt"
	"regexp"
	"strconv"
	"strings"
	"testing"
)

// A block is one real transcript of the README.
type block struct {
	line     int    // of its opening fence, 1-based
	section  string // the heading it is under
	serve    string // extra flags for its server
	env      string // NAME=VALUE ... set in its shell before the server starts
	commands []command
}

// A command is what a block types and what it shows printed.
type command struct {
	line int    // of its "$ ", 1-based
	text string // without the "$ "; several lines for a here-document
	want []string
}

var (
	markerRE = regexp.MustCompile(`^<!--\s*real(\s.*)?-->\s*$`)
	attrRE   = regexp.MustCompile(`(\w+)="([^"]*)"`)
	// <<END, <<'END', <<"END", <<-END
	heredocRE = regexp.MustCompile(`<<-?\s*['"]?([A-Za-z_][A-Za-z0-9_]*)['"]?`)
)

// parseBlocks finds the real transcripts of a Markdown text.
func parseBlocks(md string) ([]block, error) {
	lines := strings.Split(md, "\n")
	var blocks []block
	section := ""
	for i := 0; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "#") {
			section = strings.TrimSpace(strings.TrimLeft(lines[i], "#"))
		}
		m := markerRE.FindStringSubmatch(lines[i])
		if m == nil {
			continue
		}
		b := block{line: i + 2, section: section}
		for _, a := range attrRE.FindAllStringSubmatch(m[1], -1) {
			switch a[1] {
			case "serve":
				b.serve = a[2]
			case "env":
				b.env = a[2]
			default:
				return nil, fmt.Errorf("README.md:%d: unknown attribute %s of <!-- real -->", i+1, a[1])
			}
		}
		if rest := attrRE.ReplaceAllString(m[1], ""); strings.TrimSpace(rest) != "" {
			return nil, fmt.Errorf("README.md:%d: cannot read %q in <!-- real -->", i+1, strings.TrimSpace(rest))
		}
		if i+1 >= len(lines) || !strings.HasPrefix(lines[i+1], "```") {
			return nil, fmt.Errorf("README.md:%d: <!-- real --> is not followed by a fenced block", i+1)
		}
		i += 2
		var cur *command
		for ; i < len(lines) && !strings.HasPrefix(lines[i], "```"); i++ {
			line := lines[i]
			if text, ok := strings.CutPrefix(line, "$ "); ok {
				b.commands = append(b.commands, command{line: i + 1, text: text})
				cur = &b.commands[len(b.commands)-1]
				// A command goes on while its line ends with "\" or a
				// here-document is open.
				for i+1 < len(lines) {
					if strings.HasSuffix(cur.text, "\\") {
						i++
						cur.text += "\n" + lines[i]
						continue
					}
					hd := heredocRE.FindStringSubmatch(cur.text)
					if hd == nil || hasLine(cur.text, hd[1]) {
						break
					}
					i++
					cur.text += "\n" + lines[i]
				}
				continue
			}
			if cur == nil {
				return nil, fmt.Errorf("README.md:%d: output before the block's first \"$ \" command", i+1)
			}
			cur.want = append(cur.want, line)
		}
		if len(b.commands) == 0 {
			return nil, fmt.Errorf("README.md:%d: a real transcript without a command", b.line)
		}
		blocks = append(blocks, b)
	}
	return blocks, nil
}

// hasLine reports whether text has a line (after its first) that is word.
func hasLine(text, word string) bool {
	lines := strings.Split(text, "\n")
	for _, l := range lines[1:] {
		if strings.TrimSpace(l) == word {
			return true
		}
	}
	return false
}

// A normaliser turns the lines of both sides into what must be equal.
type normaliser struct {
	defaults map[int]bool // the README's ports: kept
	hostname string       // this machine's: vm in the README
	state    string       // the server's state directory's parent ($XDG_STATE_HOME)
	binary   string       // the annuaire binary under test
}

var (
	pidRE = regexp.MustCompile(`\[pid +\d+\]|\bpid=\d+|\(pid \d+\)|/proc/\d+/|Process \d+ attached|, id: \d+$`)
	// ps -o pid,ppid,args: two numbers, then the command.
	psRE  = regexp.MustCompile(`^\s*\d+\s+\d+\s+annuaire\b`)
	fdRE  = regexp.MustCompile(`\bfd=\d+|^\d+ -> `)
	hexRE = regexp.MustCompile(`\b0x[0-9a-f]{4,}\b`)
	// A zone's SOA serial: annuaire starts it at the time, in seconds.
	serialRE = regexp.MustCompile(`\b1\d{9}\b`)
	// Dates and times: 2026-12-04 21:40:12Z, 2026-12-04T21:40:12.5+01:00.
	dateRE = regexp.MustCompile(`\b\d{4}-\d\d-\d\d[ T]\d\d:\d\d:\d\d(?:\.\d+)?(?:Z|[+-]\d\d:\d\d)?`)
	// Go's durations (1h2m3.5s, 774µs), time's 0m1.955s.
	durRE = regexp.MustCompile(`\b(?:\d+h)?(?:\d+m)?\d+(?:\.\d+)?(?:ns|µs|us|ms|s)\b`)
	// ADDRESS:PORT, a name ending with its root's dot (vm.svc.internal.:PORT)
	// and strace's htons(PORT).
	portRE = regexp.MustCompile(`((?:\d{1,3}\.){3}\d{1,3}|\]|[a-z0-9]\.)(:)(\d+)\b|(htons\()(\d+)(\))`)
	// An absolute path to the annuaire binary, as ps shows a child's.
	binRE   = regexp.MustCompile(`(?:/[\w.+-]+)+/annuaire( |$)`)
	stateRE = regexp.MustCompile(`[^\s(]*/\.local/state\b`)
	blankRE = regexp.MustCompile(`[ \t]+`)
	// Ports that no colon announces: an SRV record's (after the blanks
	// are one), the one in an id made from a host and a port
	// (echo-alice-tcp-h-127-0-0-2-36059).
	srvPortRE = regexp.MustCompile(`\bSRV (\d+) (\d+) (\d+) `)
	idPortRE  = regexp.MustCompile(`\b(h-\d+-\d+-\d+-\d+)-(\d+)\b`)

	// A line of strace (after pidRE): the descriptors a call names, as
	// its first argument, in select's sets, or as what accept, socket
	// and the like return, are numbered by what the process opened
	// before; select's timeouts and time left are the clock's.
	straceRE  = regexp.MustCompile(`^(?:\[pid +N\] +)?[a-z_0-9]+\(`)
	fdArgRE   = regexp.MustCompile(`^((?:\[pid +N\] +)?[a-z_0-9]+\()\d+\b`)
	fdSetRE   = regexp.MustCompile(`\[\d+(?: \d+)*\]`)
	fdRetRE   = regexp.MustCompile(`^((?:\[pid +N\] +)?(?:accept4?|socket|dup[23]?|epoll_create1?|eventfd2?)\(.* = )\d+$`)
	timevalRE = regexp.MustCompile(`\{tv_sec=\d+, tv_[nu]sec=\d+\}`)
)

// normalise rewrites one line, of either side.
func (n *normaliser) normalise(line string) string {
	if n.state != "" {
		line = strings.ReplaceAll(line, n.state, "STATE")
	}
	line = stateRE.ReplaceAllString(line, "STATE")
	if n.binary != "" {
		line = strings.ReplaceAll(line, n.binary+" ", "annuaire ")
	}
	line = binRE.ReplaceAllString(line, "annuaire$1")
	if n.hostname != "" && n.hostname != "vm" {
		line = regexp.MustCompile(`\b`+regexp.QuoteMeta(n.hostname)+`\b`).ReplaceAllString(line, "vm")
	}
	line = pidRE.ReplaceAllStringFunc(line, func(s string) string {
		return regexp.MustCompile(`\d+`).ReplaceAllString(s, "N")
	})
	if straceRE.MatchString(line) {
		line = fdArgRE.ReplaceAllString(line, "${1}N")
		line = fdSetRE.ReplaceAllStringFunc(line, func(s string) string {
			return regexp.MustCompile(`\d+`).ReplaceAllString(s, "N")
		})
		line = fdRetRE.ReplaceAllString(line, "${1}N")
		line = timevalRE.ReplaceAllString(line, "{T}")
	}
	line = psRE.ReplaceAllString(line, "N N annuaire")
	line = fdRE.ReplaceAllStringFunc(line, func(s string) string {
		return regexp.MustCompile(`\d+`).ReplaceAllString(s, "N")
	})
	line = hexRE.ReplaceAllString(line, "0xX")
	line = dateRE.ReplaceAllString(line, "DATE")
	line = portRE.ReplaceAllStringFunc(line, func(s string) string {
		m := portRE.FindStringSubmatch(s)
		if m[3] != "" {
			return m[1] + m[2] + n.port(m[3])
		}
		return m[4] + n.port(m[5]) + m[6]
	})
	line = serialRE.ReplaceAllString(line, "SERIAL")
	line = durRE.ReplaceAllString(line, "T")
	line = blankRE.ReplaceAllString(line, " ")
	line = srvPortRE.ReplaceAllStringFunc(line, func(s string) string {
		m := srvPortRE.FindStringSubmatch(s)
		return "SRV " + m[1] + " " + m[2] + " " + n.port(m[3]) + " "
	})
	line = idPortRE.ReplaceAllStringFunc(line, func(s string) string {
		m := idPortRE.FindStringSubmatch(s)
		return m[1] + "-" + n.port(m[2])
	})
	return strings.TrimSpace(line)
}

// port keeps the README's ports and the well-known ones, and makes the
// others (a client's, chosen by the system) one word.
func (n *normaliser) port(s string) string {
	p, err := strconv.Atoi(s)
	if err != nil || p < 1024 || n.defaults[p] {
		return s
	}
	return "PORT"
}

// match compares normalised lines; a wanted "..." takes any number of
// got lines. It returns the index of the first wanted line that does not
// match, or -1.
func match(want, got []string) (bad int) {
	// memo[i][j]: want[i:] against got[j:] already failed.
	memo := map[[2]int]bool{}
	furthest := 0
	var try func(i, j int) bool
	try = func(i, j int) bool {
		if memo[[2]int{i, j}] {
			return false
		}
		furthest = max(furthest, i)
		ok := false
		switch {
		case i == len(want):
			ok = j == len(got)
		case want[i] == "...":
			for k := j; k <= len(got) && !ok; k++ {
				ok = try(i+1, k)
			}
		default:
			ok = j < len(got) && want[i] == got[j] && try(i+1, j+1)
		}
		if !ok {
			memo[[2]int{i, j}] = true
		}
		return ok
	}
	if try(0, 0) {
		return -1
	}
	return furthest
}

func TestParseBlocks(t *testing.T) {
	md := "# Lab\n\ntext\n<!-- real serve=\"--echo-mode process\" env=\"SECRET=c2VjcmV0\" -->\n```\n$ printf 'a\\n' | \\\n  cat\na\n$ cat <<'END'\nx\nEND\nx\n$ true &\n```\n\n```\n$ not real\n```\n"
	blocks, err := parseBlocks(md)
	if err != nil {
		t.Fatal(err)
	}
	if len(blocks) != 1 {
		t.Fatalf("%d blocks, want 1", len(blocks))
	}
	b := blocks[0]
	if b.serve != "--echo-mode process" || b.env != "SECRET=c2VjcmV0" || b.section != "Lab" || b.line != 5 || len(b.commands) != 3 {
		t.Fatalf("%+v", b)
	}
	for i, want := range []command{
		{line: 6, text: "printf 'a\\n' | \\\n  cat", want: []string{"a"}},
		{line: 9, text: "cat <<'END'\nx\nEND", want: []string{"x"}},
		{line: 13, text: "true &"},
	} {
		got := b.commands[i]
		if got.line != want.line || got.text != want.text || strings.Join(got.want, "|") != strings.Join(want.want, "|") {
			t.Errorf("command %d: %+v, want %+v", i, got, want)
		}
	}
	for _, bad := range []string{
		"<!-- real -->\ntext\n",
		"<!-- real what=\"x\" -->\n```\n$ true\n```\n",
		"<!-- real serve=x -->\n```\n$ true\n```\n",
		"<!-- real -->\n```\noutput\n```\n",
	} {
		if _, err := parseBlocks(bad); err == nil {
			t.Errorf("%q: no error", bad)
		}
	}
}

func TestNormalise(t *testing.T) {
	n := &normaliser{defaults: map[int]bool{1053: true, 7007: true, 17007: true}, hostname: "box7", state: "/tmp/T1/state", binary: "/tmp/T1/bin/annuaire"}
	for _, tc := range []struct{ in, want string }{
		{"  connect    127.0.0.1:7007 → 127.0.0.1:58005 → 127.0.0.1:7007   (774µs)", "connect 127.0.0.1:7007 → 127.0.0.1:PORT → 127.0.0.1:7007 (T)"},
		{"(ttl 10, 127.0.0.1:1053, 1.385ms)", "(ttl 10, 127.0.0.1:1053, T)"},
		{"real\t0m1.955s", "real T"},
		{"[pid 28783] pselect6(9, [0 8], [], NULL, NULL, NULL) = 1 (in [0])", "[pid N] pselect6(N, [N N], [], NULL, NULL, NULL) = 1 (in [N])"},
		{`[pid 1] recvfrom(8, "", 32768, 0, 0x2e51898f0690, [112 => 0]) = 0`, `[pid N] recvfrom(N, "", 32768, 0, 0xX, [112 => 0]) = 0`},
		{`connect(5, {sa_family=AF_INET, sin_port=htons(41234), sin_addr=inet_addr("127.0.0.1")}, 16)`, `connect(N, {sa_family=AF_INET, sin_port=htons(PORT), sin_addr=inet_addr("127.0.0.1")}, 16)`},
		{"[pid  4055] pselect6(30, [23 24 26 27 28 29], [], NULL, {tv_sec=299, tv_nsec=412317000}, NULL) = 1 (in [26], left {tv_sec=299, tv_nsec=122189120})", "[pid N] pselect6(N, [N N N N N N], [], NULL, {T}, NULL) = 1 (in [N], left {T})"},
		{`[pid 7] accept4(23, {sa_family=AF_INET, sin_port=htons(59484), sin_addr=inet_addr("127.0.0.1")}, [112 => 16], SOCK_CLOEXEC|SOCK_NONBLOCK) = 26`, `[pid N] accept4(N, {sa_family=AF_INET, sin_port=htons(PORT), sin_addr=inet_addr("127.0.0.1")}, [112 => 16], SOCK_CLOEXEC|SOCK_NONBLOCK) = N`},
		{`[pid 7] sendmsg(26, {msg_name=NULL, msg_iov=[{iov_base="client 1\n", iov_len=9}], msg_iovlen=1}, MSG_NOSIGNAL) = 9`, `[pid N] sendmsg(N, {msg_name=NULL, msg_iov=[{iov_base="client 1\n", iov_len=9}], msg_iovlen=1}, MSG_NOSIGNAL) = 9`},
		{"2 clients [1 2] = 3", "2 clients [1 2] = 3"},
		{`sin_port=htons(1053)`, `sin_port=htons(1053)`},
		{" 8364  8318 /tmp/T1/bin/annuaire echo-child -idle 5m0s", "N N annuaire echo-child -idle T"},
		{"   12       9 /root/go/bin/annuaire echo-child -idle 5m0s", "N N annuaire echo-child -idle T"},
		{`0  0  127.0.0.1:17007  127.0.0.1:37006 users:(("annuaire",pid=8365,fd=6))`, `0 0 127.0.0.1:17007 127.0.0.1:PORT users:(("annuaire",pid=N,fd=N))`},
		{"16 -> anon_inode:[eventpoll]", "N -> anon_inode:[eventpoll]"},
		{"web http://127.0.0.1:8080/ (API token in /tmp/T1/state/annuaire/token)", "web http://127.0.0.1:PORT/ (API token in STATE/annuaire/token)"},
		{"(API token in /root/.local/state/annuaire/token)", "(API token in STATE/annuaire/token)"},
		{`"from": "root@box7",`, `"from": "root@vm",`},
		{"0 0 7007 vm.svc.internal.", "0 0 7007 vm.svc.internal."},
		{"annuaire echo (pid 4242)", "annuaire echo (pid N)"},
		{";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: 35301", ";; ->>HEADER<<- opcode: QUERY, status: NOERROR, id: N"},
		{"svc.internal.		60	IN	SOA	ns.svc.internal. hostmaster.svc.internal. 1795516214 300 60 86400 10", "svc.internal. 60 IN SOA ns.svc.internal. hostmaster.svc.internal. SERIAL 300 60 86400 10"},
		{"; zone svc.internal. serial 1795517403, 10 records, exported by annuaire", "; zone svc.internal. serial SERIAL, 10 records, exported by annuaire"},
		{"alice  default        2026-12-04 21:40:12Z", "alice default DATE"},
		{"http    _http._tcp.svc.internal. SRV → vm.svc.internal.:42135 → 127.0.0.2:42135", "http _http._tcp.svc.internal. SRV → vm.svc.internal.:PORT → 127.0.0.2:PORT"},
		{"registered echo-alice: _echo-alice._tcp.svc.internal. SRV 0 0 34005 h-127-0-0-1.svc.internal. → 127.0.0.1:34005 (id echo-alice-tcp-h-127-0-0-1-34005)",
			"registered echo-alice: _echo-alice._tcp.svc.internal. SRV 0 0 PORT h-127-0-0-1.svc.internal. → 127.0.0.1:PORT (id echo-alice-tcp-h-127-0-0-1-PORT)"},
		{"_echo._tcp.svc.internal. 10\tIN\tSRV\t0 0 7007 vm.svc.internal.", "_echo._tcp.svc.internal. 10 IN SRV 0 0 7007 vm.svc.internal."},
		{"time=2026-12-04T18:47:50.618+01:00 level=INFO", "time=DATE level=INFO"},
	} {
		if got := n.normalise(tc.in); got != tc.want {
			t.Errorf("normalise(%q)\n = %q\nwant %q", tc.in, got, tc.want)
		}
	}
}

func TestBackground(t *testing.T) {
	for text, want := range map[string]bool{
		"sleep 5 | nc 127.0.0.1 7007 &":                   true,
		"(printf 'a\\n'; sleep 5) | nc -N h 7 &   # held": true,
		"for i in 1 2; do nc h 7 & done":                  true,
		"cmd >/dev/null 2>&1":                             false,
		"cmd &>/dev/null":                                 false,
		"a && b":                                          false,
		"echo '# not a comment &'":                        false,
		"cat <<END\nx &\nEND":                             false,
	} {
		if got := background(text); got != want {
			t.Errorf("background(%q) = %v", text, got)
		}
	}
}

func TestMatch(t *testing.T) {
	for _, tc := range []struct {
		want, got string
		bad       int
	}{
		{"a b", "a b", -1},
		{"a ... d", "a b c d", -1},
		{"a ... d", "a d", -1},
		{"... c", "a b c", -1},
		{"a ...", "a", -1},
		{"a ... c ... e", "a b c d c e", -1},
		{"a b", "a c", 1},
		{"a b", "a b c", 2},
		{"a ... x", "a b c", 2},
		{"", "a", 0},
	} {
		if got := match(strings.Fields(tc.want), strings.Fields(tc.got)); got != tc.bad {
			t.Errorf("match(%q, %q) = %d, want %d", tc.want, tc.got, got, tc.bad)
		}
	}
}
