package main

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"runtime"

	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/services/web"
)

// Secrets on the command line are visible to every user of the machine
// (ps, /proc/PID/cmdline): serve takes them from files or from the
// environment instead, and says so when it is given them as flags.

// readKeys adds to the keys of --tsig those of each --tsig-file and of
// $ANNUAIRE_TSIG (read as a key file).
func (f *serveFlags) readKeys(e *env, logger *slog.Logger) error {
	if len(f.tsig) > 0 {
		logger.Warn("--tsig puts a secret where ps shows it to every user: use --tsig-file or $ANNUAIRE_TSIG")
	}
	for _, path := range f.tsigFiles {
		text, err := readSecretFile(path, logger)
		if err != nil {
			return fmt.Errorf("--tsig-file: %w", err)
		}
		ks, err := tsig.ParseKeyFile(text)
		if err == nil && len(ks) == 0 {
			err = fmt.Errorf("no key in it")
		}
		if err != nil {
			return fmt.Errorf("--tsig-file %s: %w", path, err)
		}
		f.keys = append(f.keys, ks...)
	}
	if text := e.getenv("ANNUAIRE_TSIG"); text != "" {
		ks, err := tsig.ParseKeyFile(text)
		if err != nil {
			return fmt.Errorf("$ANNUAIRE_TSIG: %w", err)
		}
		f.keys = append(f.keys, ks...)
	}
	return nil
}

// serveToken returns the API token, and where it is for the banner:
// --token, --token-file, $ANNUAIRE_TOKEN, or DATA/token, created at first
// start.
func serveToken(e *env, f *serveFlags, logger *slog.Logger) (token, from string, err error) {
	switch {
	case f.token != "":
		logger.Warn("--token puts a secret where ps shows it to every user: use --token-file or $ANNUAIRE_TOKEN")
		return f.token, "given by --token", nil
	case f.tokenFile != "":
		if _, err := readSecretFile(f.tokenFile, logger); err != nil {
			return "", "", fmt.Errorf("--token-file: %w", err)
		}
		token, err = web.ReadTokenFile(f.tokenFile)
		return token, "in " + f.tokenFile, err
	case e.getenv("ANNUAIRE_TOKEN") != "":
		return e.getenv("ANNUAIRE_TOKEN"), "from $ANNUAIRE_TOKEN", nil
	}
	token, err = web.LoadOrCreateToken(f.data)
	return token, "in " + filepath.Join(f.data, web.TokenFile), err
}

// readSecretFile reads a file of secrets, and warns when other users may
// read it too, as ssh does of a private key.
func readSecretFile(path string, logger *slog.Logger) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", err
	}
	if fi, err := os.Stat(path); err == nil && runtime.GOOS != "windows" && fi.Mode().Perm()&0o077 != 0 {
		logger.Warn("a file of secrets is readable by other users: chmod 600 it", "file", path, "mode", fi.Mode().Perm().String())
	}
	return string(b), nil
}
