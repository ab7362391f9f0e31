// Package testenv finds the real clients and peers that tests talk to
// (dig, knotd, nsd, unbound, python3 with dnspython, ...). For tests only.
//
// A missing tool skips the test on a developer's machine and fails it
// under CI (CI=true), where .ci/run has installed every tool: a test that
// silently skipped there would prove nothing.
package testenv

import (
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
)

// NeedTool returns the path of an external program. Daemons live in
// /usr/sbin, which is not in every user's PATH: it is looked at too.
func NeedTool(tb testing.TB, name string) string {
	tb.Helper()
	path, err := exec.LookPath(name)
	if err == nil {
		return path
	}
	for _, dir := range []string{"/usr/sbin", "/sbin"} {
		p := filepath.Join(dir, name)
		if st, serr := os.Stat(p); serr == nil && !st.IsDir() {
			return p
		}
	}
	missing(tb, name+" not installed: "+err.Error())
	return ""
}

// Python returns a python3 interpreter that can import every module named
// (none: any python3). The python3 first in PATH may be a private build
// without Debian's modules (python3-dnspython installs for /usr/bin/python3),
// so each candidate is asked.
func Python(tb testing.TB, modules ...string) string {
	tb.Helper()
	var tried []string
	for _, cand := range []string{"python3", "/usr/bin/python3"} {
		path, err := exec.LookPath(cand)
		if err != nil {
			continue
		}
		if len(modules) == 0 {
			return path
		}
		script := "import " + strings.Join(modules, ", ")
		if exec.Command(path, "-c", script).Run() == nil {
			return path
		}
		tried = append(tried, path)
	}
	missing(tb, "no python3 that imports "+strings.Join(modules, ", ")+" (tried "+strings.Join(tried, ", ")+"; Debian: python3-dnspython)")
	return ""
}

func missing(tb testing.TB, why string) {
	tb.Helper()
	if os.Getenv("CI") == "true" {
		tb.Fatalf("required under CI: %s", why)
	}
	tb.Skip(why)
}

// PythonServer runs a server written in Python, script with args, until
// the test ends, and returns the port it prints first: the way a
// student's own program listens, on a port the system picks.
func PythonServer(tb testing.TB, script string, args ...string) int {
	tb.Helper()
	cmd := exec.Command(Python(tb), append([]string{"-c", script}, args...)...)
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		tb.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		tb.Fatal(err)
	}
	tb.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	var port int
	if _, err := fmt.Fscan(stdout, &port); err != nil {
		tb.Fatalf("python server: no port printed: %v", err)
	}
	return port
}
