package readme

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/annuaire/annuaire/registry"
)

// A session is one bash, fed commands one at a time, with stdout and
// stderr in one pipe as a terminal has them.
type session struct {
	t     *testing.T
	cmd   *exec.Cmd
	stdin io.WriteCloser

	mu   sync.Mutex
	out  bytes.Buffer  // guarded by mu: what bash printed, not yet taken
	more chan struct{} // signalled when out grows or bash exits
	done bool          // guarded by mu: bash exited
	n    int           // commands run, for their end markers
}

// isolate is the command that gives the shell a process namespace of its
// own, so that pgrep and ps see its server and no other one running on
// the machine; nil where that is not allowed (an unprivileged container).
func isolate(t *testing.T) []string {
	unshare, err := exec.LookPath("unshare")
	if err != nil {
		return nil
	}
	args := []string{unshare, "--pid", "--fork", "--mount-proc", "--kill-child"}
	if os.Geteuid() != 0 {
		args = append(args, "--user", "--map-root-user")
	}
	if out, err := exec.Command(args[0], append(args[1:], "true")...).CombinedOutput(); err != nil {
		t.Logf("no process namespace (%v: %s): pgrep may find other annuaire servers", err, bytes.TrimSpace(out))
		return nil
	}
	return args
}

func startSession(t *testing.T, dir string, env []string) *session {
	t.Helper()
	args := append(isolate(t), "bash", "--norc", "--noprofile")
	cmd := exec.Command(args[0], args[1:]...)
	cmd.Dir = dir
	cmd.Env = env
	// Its own process group: whatever it leaves running is killed with it.
	ownGroup(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		t.Fatal(err)
	}
	r, w, err := os.Pipe()
	if err != nil {
		t.Fatal(err)
	}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	w.Close()
	s := &session{t: t, cmd: cmd, stdin: stdin, more: make(chan struct{}, 1)}
	go func() {
		buf := make([]byte, 32<<10)
		for {
			n, err := r.Read(buf)
			s.mu.Lock()
			s.out.Write(buf[:n])
			if err != nil {
				s.done = true
			}
			s.mu.Unlock()
			select {
			case s.more <- struct{}{}:
			default:
			}
			if err != nil {
				r.Close()
				return
			}
		}
	}()
	t.Cleanup(s.close)
	return s
}

// run types text and returns what it printed. A command ending with "&"
// runs in the background and gets a second to print what it prints at
// once (a loaded machine starts nc and its sleep in that time).
func (s *session) run(text string, timeout time.Duration) (string, error) {
	s.n++
	mark := fmt.Sprintf("__readme_done_%d__", s.n)
	var b strings.Builder
	// Its stdin is not the session's: a command that reads stdin gets
	// the end of file, as one typed at a terminal with nothing to type.
	fmt.Fprintf(&b, "{ %s\n} </dev/null\n", text)
	if background(text) {
		b.WriteString("sleep 1\n")
	}
	fmt.Fprintf(&b, "printf '%%s\\n' %s\n", mark)
	if _, err := io.WriteString(s.stdin, b.String()); err != nil {
		return "", fmt.Errorf("typing into bash: %w", err)
	}
	deadline := time.After(timeout)
	for {
		s.mu.Lock()
		out, exited := s.out.String(), s.done
		if i := strings.Index(out, mark+"\n"); i >= 0 {
			s.out.Next(i + len(mark) + 1)
			s.mu.Unlock()
			return out[:i], nil
		}
		s.mu.Unlock()
		if exited {
			return out, fmt.Errorf("bash exited")
		}
		select {
		case <-s.more:
		case <-deadline:
			return out, fmt.Errorf("still running after %v", timeout)
		}
	}
}

var (
	// quoted strings, then a comment at the end of a line, as the README
	// writes them
	quotedRE  = regexp.MustCompile(`'[^']*'|"[^"]*"`)
	commentRE = regexp.MustCompile(`(?m)\s#.*$`)
	// a lone & (not &&, >&, &>)
	ampRE = regexp.MustCompile(`(^|[^&>])&(\s|$)`)
)

// background reports whether a command leaves a job running: it has a
// lone "&" outside quotes and comments (here-documents aside).
func background(text string) bool {
	first, _, _ := strings.Cut(text, "\n")
	if heredocRE.MatchString(first) {
		text = first
	}
	text = commentRE.ReplaceAllString(quotedRE.ReplaceAllString(text, "''"), "")
	return ampRE.MatchString(text)
}

func (s *session) close() {
	s.stdin.Close()
	done := make(chan struct{})
	go func() {
		s.cmd.Wait()
		close(done)
	}()
	select {
	case <-done:
	case <-time.After(10 * time.Second):
	}
	// Background jobs the block left, and the server if it is still up.
	killGroup(s.cmd)
	<-done
}

// A server is the annuaire serve a block runs against.
type server struct {
	ports  map[int]int // the README's port → the one it got
	dns    string      // its DNS address
	web    string      // its web address
	banner string
}

// serveFlags reads `annuaire serve -h`: every flag whose default is an
// address, with its default port. Each gets a port of the system's
// choosing, so that no test binds a fixed port.
func serveFlags(t *testing.T, bin string) map[string]int {
	t.Helper()
	out, _ := exec.Command(bin, "serve", "-h").CombinedOutput()
	flags := map[string]int{}
	// "  --dns ADDRESS", then its usage, wrapped and indented.
	re := regexp.MustCompile(`(?m)^  --([a-z-]+) ADDRESS\n((?:      .*\n)+)`)
	def := regexp.MustCompile(`\(default 127\.0\.0\.1:(\d+)\)`)
	for _, m := range re.FindAllStringSubmatch(string(out), -1) {
		if d := def.FindStringSubmatch(strings.Join(strings.Fields(m[2]), " ")); d != nil {
			p, _ := strconv.Atoi(d[1])
			flags[m[1]] = p
		}
	}
	if flags["dns"] == 0 || flags["web"] == 0 {
		t.Fatalf("serve -h names no --dns or --web address:\n%s", out)
	}
	return flags
}

// startServer starts annuaire serve in the session with the block's
// flags, and learns from its banner the port each address flag got.
func startServer(t *testing.T, s *session, bin, dir string, extra []string) *server {
	t.Helper()
	flags := serveFlags(t, bin)
	want := map[string]int{} // flag → the README's port
	var args []string
	// The block's flags first, so that they read as the README's
	// command line does (pgrep -f 'annuaire serve --echo ...').
	for i := 0; i < len(extra); i++ {
		name := strings.TrimLeft(extra[i], "-")
		if _, isAddr := flags[name]; isAddr && i+1 < len(extra) {
			_, port, _ := strings.Cut(extra[i+1], ":")
			p, err := strconv.Atoi(port)
			if err != nil {
				t.Fatalf("serve flag %s %s: not HOST:PORT", extra[i], extra[i+1])
			}
			want[name] = p
			args = append(args, extra[i], "127.0.0.1:0")
			i++
			continue
		}
		args = append(args, extra[i])
	}
	for name, p := range flags {
		if _, given := want[name]; !given {
			want[name] = p
			args = append(args, "--"+name, "127.0.0.1:0")
		}
	}
	if !strings.Contains(strings.Join(extra, " "), "--hostname") {
		args = append(args, "--hostname", "vm")
	}
	logFile := filepath.Join(dir, "serve.log")
	if _, err := s.run(fmt.Sprintf("annuaire serve %s >%s 2>&1 &", strings.Join(args, " "), logFile), 10*time.Second); err != nil {
		t.Fatalf("starting the server: %v", err)
	}

	// The banner is complete when the log says it serves.
	var banner string
	for deadline := time.Now().Add(30 * time.Second); ; {
		b, _ := os.ReadFile(logFile)
		banner = string(b)
		if strings.Contains(banner, `msg="annuaire serving"`) {
			break
		}
		if time.Now().After(deadline) || strings.Contains(banner, "annuaire: ") {
			t.Fatalf("the server did not start:\n%s", banner)
		}
		time.Sleep(50 * time.Millisecond)
	}
	srv := &server{ports: map[int]int{}, banner: banner}
	got := bannerPorts(banner)
	cat := registry.DefaultCatalog()
	for name, readmePort := range want {
		p, ok := got[name]
		if !ok {
			p, ok = got[cat.Canonical(name)] // --mail serves smtp
		}
		if !ok {
			t.Fatalf("no banner line says where --%s serves:\n%s", name, banner)
		}
		srv.ports[readmePort] = p
	}
	srv.dns = fmt.Sprintf("127.0.0.1:%d", got["dns"])
	srv.web = fmt.Sprintf("127.0.0.1:%d", got["web"])
	return srv
}

// bannerPorts reads serve's banner: the first word of a line names what
// listens, its last 127.0.0.1:PORT where.
func bannerPorts(banner string) map[string]int {
	ports := map[string]int{}
	addr := regexp.MustCompile(`127\.0\.0\.1:(\d+)`)
	sc := bufio.NewScanner(strings.NewReader(banner))
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) < 2 || strings.Contains(f[0], "=") {
			continue
		}
		all := addr.FindAllStringSubmatch(sc.Text(), -1)
		if len(all) == 0 {
			continue
		}
		p, _ := strconv.Atoi(all[len(all)-1][1])
		ports[f[0]] = p
	}
	return ports
}
