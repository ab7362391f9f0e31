package testenv

import (
	"os"
	"os/exec"
	"testing"
	"time"
)

// Daemon runs a peer's daemon (knotd, nsd, named, unbound, ...) in the
// foreground until the test ends, and returns what it prints. The daemon
// is asked to stop (SIGTERM where there is one), then killed after 5 s.
// If the test failed, its output is logged under name, followed by what
// each of logs returns: a log file the daemon writes, the server's log.
func Daemon(tb testing.TB, name string, logs []func() string, bin string, args ...string) *LogBuffer {
	tb.Helper()
	out := new(LogBuffer)
	cmd := exec.Command(bin, args...)
	cmd.Stdout, cmd.Stderr = out, out
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() {
		done := make(chan struct{})
		go func() { cmd.Wait(); close(done) }()
		if stop(cmd.Process) != nil {
			cmd.Process.Kill()
		}
		select {
		case <-done:
		case <-time.After(5 * time.Second):
			cmd.Process.Kill()
			<-done
		}
		if tb.Failed() {
			tb.Logf("%s:\n%s", name, out.String())
			for _, l := range logs {
				tb.Log(l())
			}
		}
	})
	return out
}

// WriteConf writes a daemon's configuration file, for Daemon's args.
func WriteConf(tb testing.TB, path, conf string) string {
	tb.Helper()
	if err := os.WriteFile(path, []byte(conf), 0o600); err != nil {
		tb.Fatal(err)
	}
	return path
}
