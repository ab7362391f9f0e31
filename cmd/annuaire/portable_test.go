package main

import (
	"bytes"
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/services/echo"
)

// Every system's default data directory, checked on any one.
func TestDataDir(t *testing.T) {
	tmp := filepath.Join(os.TempDir(), "annuaire")
	for _, c := range []struct {
		goos string
		env  map[string]string
		want string
	}{
		{"linux", map[string]string{"HOME": "/home/ada"}, "/home/ada/.local/state/annuaire"},
		{"linux", map[string]string{"HOME": "/home/ada", "XDG_STATE_HOME": "/var/ada"}, "/var/ada/annuaire"},
		{"freebsd", map[string]string{"HOME": "/home/ada"}, "/home/ada/.local/state/annuaire"},
		{"linux", nil, tmp},
		{"darwin", map[string]string{"HOME": "/Users/ada"}, "/Users/ada/Library/Application Support/annuaire"},
		{"darwin", map[string]string{"HOME": "/Users/ada", "XDG_STATE_HOME": "/Users/ada/.state"}, "/Users/ada/.state/annuaire"},
		{"windows", map[string]string{"LocalAppData": `C:\Users\ada\AppData\Local`, "HOME": "/ignored"}, filepath.Join(`C:\Users\ada\AppData\Local`, "annuaire")},
		{"windows", map[string]string{"XDG_STATE_HOME": "/ignored"}, tmp},
	} {
		got := dataDir(c.goos, func(k string) string { return c.env[k] })
		if got != filepath.FromSlash(c.want) {
			t.Errorf("%s with %v: %q, want %q", c.goos, c.env, got, c.want)
		}
	}
}

// An echo design this system cannot run is refused in one line that says
// why, before anything starts. On Linux, the portable build tag (.ci/run)
// makes epoll mode one of them, under its two names.
func TestServeEchoModeRefused(t *testing.T) {
	for _, mode := range []string{"epoll", "poll"} {
		t.Run(mode, func(t *testing.T) { testServeEchoModeRefused(t, mode) })
	}
}

func testServeEchoModeRefused(t *testing.T, mode string) {
	err := echo.CheckMode(mode)
	if err == nil {
		t.Skip("this system runs every echo design; go test -tags portable refuses epoll")
	}
	var stdout, stderr bytes.Buffer
	e := &env{stdin: strings.NewReader(""), stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	code := exitCode(e, Run(context.Background(), e, []string{"serve", "--echo-mode", mode, "--data", t.TempDir()}))
	want := "annuaire serve: --echo-mode " + err.Error() + "\ntry 'annuaire serve --help'\n"
	if code != 2 || stderr.String() != want {
		t.Errorf("exit %d, stderr %q; want 2 and the line %q", code, stderr.String(), want)
	}
}
