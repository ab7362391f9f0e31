package main

import (
	"os"
	"path/filepath"
	"runtime"
)

// defaultDataDir is where a user's annuaire keeps its state unless told
// otherwise (--data).
func defaultDataDir(e *env) string { return dataDir(runtime.GOOS, e.getenv) }

// dataDir is defaultDataDir for the system goos, so that tests check
// every system's choice on any one:
//
//	Windows  %LocalAppData%\annuaire: per user and not roaming, as
//	         the journal belongs to this machine (os.UserCacheDir's
//	         choice of folder; os.UserConfigDir's, %AppData%, roams)
//	macOS    ~/Library/Application Support/annuaire (os.UserConfigDir)
//	others   $XDG_STATE_HOME/annuaire, ~/.local/state/annuaire by default
//	         (XDG Base Directory: state that persists across restarts)
//
// $XDG_STATE_HOME, when set, is honoured on every Unix system. Without a
// home, the system's temporary directory is used.
func dataDir(goos string, getenv func(string) string) string {
	if goos == "windows" {
		if d := getenv("LocalAppData"); d != "" {
			return filepath.Join(d, "annuaire")
		}
		return filepath.Join(os.TempDir(), "annuaire")
	}
	if d := getenv("XDG_STATE_HOME"); d != "" {
		return filepath.Join(d, "annuaire")
	}
	home := getenv("HOME")
	switch {
	case home == "":
		return filepath.Join(os.TempDir(), "annuaire")
	case goos == "darwin" || goos == "ios":
		return filepath.Join(home, "Library", "Application Support", "annuaire")
	}
	return filepath.Join(home, ".local", "state", "annuaire")
}
