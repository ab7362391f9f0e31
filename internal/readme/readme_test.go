package readme

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"runtime"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
)

// commandTimeout bounds one command of a transcript; the lab's longest
// waits for a client holding its connection for a few seconds.
const commandTimeout = 60 * time.Second

// tools are the programs transcripts run that a machine may lack: a
// block that names one needs it (skipped without it, failed under CI).
var tools = []string{"curl", "dig", "kdig", "nc", "nsupdate", "pgrep", "ps", "ss", "strace", "swaks", "telnet"}

// TestReadme runs every real transcript of the README against a fresh
// server; see the package documentation.
func TestReadme(t *testing.T) {
	runDoc(t, "README.md")
}

// TestLabDocs runs the lab guide's real transcripts, in French and in
// English, and the teacher's answers'.
func TestLabDocs(t *testing.T) {
	for _, doc := range []string{"docs/lab.fr.md", "docs/lab.en.md", "docs/lab-corrige.fr.md"} {
		t.Run(strings.TrimPrefix(doc, "docs/"), func(t *testing.T) { runDoc(t, doc) })
	}
}

// runDoc runs the real transcripts of doc, a path from the repository's
// root; each block runs in a directory that holds the lab's programs
// (lab/*.py), as a student's would.
func runDoc(t *testing.T, doc string) {
	if runtime.GOOS != "linux" {
		t.Skip("the transcripts are Linux's (ss, strace, /proc)")
	}
	if testing.Short() {
		t.Skip("starts a server per transcript")
	}
	testenv.NeedTool(t, "bash")
	md, err := os.ReadFile("../../" + doc)
	if err != nil {
		t.Fatal(err)
	}
	blocks, err := parseBlocks(string(md))
	if err != nil {
		t.Fatalf("%s: %v", doc, err)
	}
	if len(blocks) == 0 {
		t.Fatalf("no <!-- real --> transcript in %s", doc)
	}

	bin := filepath.Join(t.TempDir(), "bin")
	build := exec.Command("go", "build", "-o", bin+"/annuaire", "./cmd/annuaire")
	build.Dir = "../.."
	if out, err := build.CombinedOutput(); err != nil {
		t.Fatalf("go build: %v\n%s", err, out)
	}
	hostname, _ := os.Hostname()
	lab, _ := filepath.Glob("../../lab/*.py")

	for _, b := range blocks {
		t.Run(fmt.Sprintf("line_%d", b.line), func(t *testing.T) {
			t.Logf("%s:%d (%s), server flags %q", doc, b.line, b.section, b.serve)
			for _, tool := range tools {
				for _, c := range b.commands {
					if regexp.MustCompile(`(^|[\s|;&(]|\$\()` + tool + `\b`).MatchString(c.text) {
						testenv.NeedTool(t, tool)
						break
					}
				}
			}
			if strings.Contains(strings.Join(commandTexts(b), "\n"), "python3") {
				testenv.Python(t)
			}
			runBlock(t, doc, b, bin, hostname, lab)
		})
	}
}

func commandTexts(b block) []string {
	var out []string
	for _, c := range b.commands {
		out = append(out, c.text)
	}
	return out
}

func runBlock(t *testing.T, doc string, b block, bin, hostname string, lab []string) {
	dir := t.TempDir()
	for _, py := range lab {
		src, err := os.ReadFile(py)
		if err != nil {
			t.Fatal(err)
		}
		if err := os.WriteFile(filepath.Join(dir, filepath.Base(py)), src, 0o644); err != nil {
			t.Fatal(err)
		}
	}
	state := filepath.Join(dir, "state")
	home := filepath.Join(dir, "home")
	for _, d := range []string{state, home} {
		if err := os.Mkdir(d, 0o700); err != nil {
			t.Fatal(err)
		}
	}
	env := []string{
		"PATH=" + bin + string(os.PathListSeparator) + os.Getenv("PATH"),
		"HOME=" + home,
		"XDG_STATE_HOME=" + state,
		"LC_ALL=C.UTF-8",
		"TERM=dumb",
		"PYTHONDONTWRITEBYTECODE=1",
		"PYTHONUNBUFFERED=1",
	}
	env = append(env, strings.Fields(b.env)...)
	s := startSession(t, dir, env)
	srv := startServer(t, s, bin+"/annuaire", dir, strings.Fields(b.serve))
	// The client commands find the server as the README's defaults would.
	if _, err := s.run(fmt.Sprintf("export ANNUAIRE_SERVER=%s ANNUAIRE_WEB=%s", srv.dns, srv.web), 5*time.Second); err != nil {
		t.Fatal(err)
	}

	n := &normaliser{defaults: map[int]bool{}, hostname: hostname, state: state, binary: bin + "/annuaire"}
	for readme := range srv.ports {
		n.defaults[readme] = true
	}
	// Longest first: 17007 before 7007 would not matter with whole
	// words, but a stable order makes a stable command line.
	var readmePorts []int
	for p := range srv.ports {
		readmePorts = append(readmePorts, p)
	}
	sort.Sort(sort.Reverse(sort.IntSlice(readmePorts)))

	var real strings.Builder // what the block really printed, for pasting
	for _, c := range b.commands {
		text := c.text
		for _, p := range readmePorts {
			text = regexp.MustCompile(`\b`+strconv.Itoa(p)+`\b`).ReplaceAllString(text, strconv.Itoa(srv.ports[p]))
		}
		out, err := s.run(text, commandTimeout)
		if err != nil {
			t.Fatalf("%s:%d: $ %s\n%v; printed:\n%s", doc, c.line, c.text, err, out)
		}
		// The ports it got read as the README's.
		for readmePort, p := range srv.ports {
			out = regexp.MustCompile(`\b`+strconv.Itoa(p)+`\b`).ReplaceAllString(out, strconv.Itoa(readmePort))
		}
		got := strings.Split(strings.TrimSuffix(out, "\n"), "\n")
		if out == "" {
			got = nil
		}
		fmt.Fprintf(&real, "$ %s\n%s", c.text, out)

		var wantN, gotN []string
		for _, l := range c.want {
			wantN = append(wantN, n.normalise(l))
		}
		for _, l := range got {
			// strace -f reports a thread that exits while it is being
			// traced as "???( <detached ...>", or not, as the race goes:
			// a line of the tracer's timing, not of the program.
			if strings.HasSuffix(l, "???( <detached ...>") {
				continue
			}
			gotN = append(gotN, n.normalise(l))
		}
		if i := match(wantN, gotN); i >= 0 {
			line := c.line + strings.Count(c.text, "\n") + 1 + i
			wanted := "the end of the output"
			if i < len(c.want) {
				wanted = fmt.Sprintf("%q", c.want[i])
			}
			t.Errorf("%s:%d: $ %s\n%s:%d: wants %s; the command printed:\n%s\nnormalised, README:\n  %s\nnormalised, printed:\n  %s",
				doc, c.line, c.text, doc, line, wanted, out, strings.Join(wantN, "\n  "), strings.Join(gotN, "\n  "))
		}
	}
	// Shown on failure, and with -v: ready to paste.
	t.Logf("what the block really printed (ports as in the README):\n```\n%s```", real.String())

}
