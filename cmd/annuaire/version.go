package main

import (
	"context"
	"fmt"
	"runtime"
	"runtime/debug"
	"strings"
)

const versionAbout = `Prints annuaire's module version, the revision it was built from and the
Go toolchain that built it, as the binary records them (go version -m
shows the same). "go build" in a git clone records the revision and
whether the tree had local changes; "go install ...@VERSION" records
the version.
`

const versionExample = `
$ annuaire version
annuaire v0.0.0-20261204192431-4ca87be96074 (revision 4ca87be96074, 2026-12-04T19:24:31Z) go1.26.8 linux/amd64
`

func runVersion(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "version")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{cmd: "version", err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	bi, _ := debug.ReadBuildInfo()
	fmt.Fprintln(e.stdout, versionLine(bi))
	return nil
}

// versionLine is "annuaire VERSION (revision REV, TIME) GO OS/ARCH", with
// what the build recorded: a binary built outside a git clone has no
// revision, and "go run" records no version.
func versionLine(bi *debug.BuildInfo) string {
	version := "(devel)"
	var rev, at string
	modified := false
	if bi != nil {
		if bi.Main.Version != "" {
			version = bi.Main.Version
		}
		for _, s := range bi.Settings {
			switch s.Key {
			case "vcs.revision":
				rev = s.Value
			case "vcs.time":
				at = s.Value
			case "vcs.modified":
				modified = s.Value == "true"
			}
		}
	}
	var vcs []string
	if rev != "" {
		if len(rev) > 12 {
			rev = rev[:12]
		}
		if modified && !strings.HasSuffix(version, "+dirty") {
			rev += "+dirty"
		}
		vcs = append(vcs, "revision "+rev)
	}
	if at != "" {
		vcs = append(vcs, at)
	}
	line := "annuaire " + version
	if len(vcs) > 0 {
		line += " (" + strings.Join(vcs, ", ") + ")"
	}
	return line + " " + runtime.Version() + " " + runtime.GOOS + "/" + runtime.GOARCH
}
