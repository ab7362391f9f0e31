//go:build linux

package telnet

import (
	"bytes"
	"errors"
	"fmt"
	"net"
	"os"
	"os/exec"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/annuaire/annuaire/internal/testenv"
)

// openPTY opens a pseudo-terminal pair, as openpty(3) does.
func openPTY() (master, slave *os.File, err error) {
	master, err = os.OpenFile("/dev/ptmx", os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		return nil, nil, err
	}
	fd := int(master.Fd())
	if err := unix.IoctlSetPointerInt(fd, unix.TIOCSPTLCK, 0); err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("unlock pty: %w", err)
	}
	n, err := unix.IoctlGetUint32(fd, unix.TIOCGPTN)
	if err != nil {
		master.Close()
		return nil, nil, fmt.Errorf("pty number: %w", err)
	}
	slave, err = os.OpenFile(fmt.Sprintf("/dev/pts/%d", n), os.O_RDWR|syscall.O_NOCTTY, 0)
	if err != nil {
		master.Close()
		return nil, nil, err
	}
	return master, slave, nil
}

// screen collects what a program writes to its terminal.
type screen struct {
	mu  sync.Mutex // guards buf
	buf bytes.Buffer
}

func (s *screen) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.Write(p)
}

func (s *screen) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.buf.String()
}

// waitFor waits until the screen shows want after position from, and
// returns the position after it.
func (s *screen) waitFor(t *testing.T, from int, want string) int {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for time.Now().Before(deadline) {
		out := s.String()
		if i := strings.Index(out[from:], want); i >= 0 {
			return from + i + len(want)
		}
		time.Sleep(10 * time.Millisecond)
	}
	t.Fatalf("%q never appeared; the terminal shows:\n%s", want, s.String())
	return 0
}

// TestRealTelnet drives /usr/bin/telnet on a pseudo-terminal, as a student
// at a keyboard: help, lookup echo, quit. The second run first asks the
// client for "mode character", which makes it negotiate (DO SGA, DO ECHO);
// refused, it must go on in line mode without a glitch.
func TestRealTelnet(t *testing.T) {
	telnet := testenv.NeedTool(t, "telnet")
	t.Run("LineMode", func(t *testing.T) { realTelnet(t, telnet, false) })
	t.Run("ModeCharacterRefused", func(t *testing.T) { realTelnet(t, telnet, true) })
}

func realTelnet(t *testing.T, telnet string, modeCharacter bool) {
	s := &Console{List: fakeList, Lookup: fakeLookup}
	host, port, _ := net.SplitHostPort(start(t, s))

	master, slave, err := openPTY()
	if err != nil {
		t.Skipf("no pseudo-terminal: %v", err)
	}
	defer master.Close()
	cmd := exec.Command(telnet, host, port)
	cmd.Env = append(os.Environ(), "TERM=dumb")
	cmd.Stdin, cmd.Stdout, cmd.Stderr = slave, slave, slave
	cmd.SysProcAttr = &syscall.SysProcAttr{Setsid: true, Setctty: true, Ctty: 0}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	slave.Close()
	defer cmd.Process.Kill()
	var term screen
	go func() {
		buf := make([]byte, 4096)
		for {
			n, err := master.Read(buf)
			term.Write(buf[:n])
			if err != nil {
				return // EIO once telnet has exited
			}
		}
	}()
	typeLine := func(s string) {
		if _, err := master.WriteString(s + "\r"); err != nil {
			t.Fatal(err)
		}
	}

	at := term.waitFor(t, 0, "Escape character is")
	at = term.waitFor(t, at, prompt)
	if modeCharacter {
		master.WriteString("\x1d") // ^], telnet's escape
		at = term.waitFor(t, at, "telnet> ")
		typeLine("mode character")
		typeLine("") // an empty line: the server answers with a prompt
		at = term.waitFor(t, at, prompt)
	}
	typeLine("help")
	at = term.waitFor(t, at, "lookup NAME")
	at = term.waitFor(t, at, prompt)
	typeLine("lookup echo")
	at = term.waitFor(t, at, "-> 127.0.0.1:7007")
	at = term.waitFor(t, at, prompt)
	typeLine("quit")
	at = term.waitFor(t, at, "Goodbye.")
	term.waitFor(t, at, "Connection closed by foreign host.")

	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	select {
	case err := <-exited:
		var ee *exec.ExitError
		if err != nil && !(errors.As(err, &ee) && ee.ExitCode() == 1) {
			t.Errorf("telnet: %v", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("telnet did not exit after quit")
	}
	t.Logf("the terminal:\n%s", strings.ReplaceAll(term.String(), "\r", ""))
	if out := term.String(); strings.Contains(out, "\xff") || strings.Contains(out, "Connection closed by foreign host.\r\n") && strings.Count(out, "Connection closed") != 1 {
		t.Errorf("telnet printed protocol bytes or closed twice:\n%q", out)
	}
}
