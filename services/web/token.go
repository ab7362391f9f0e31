package web

import (
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"strings"
)

// TokenFile is the name of the token's file in the data directory.
const TokenFile = "token"

// LoadOrCreateToken returns the API token kept in dir/token, creating the
// directory and a random token on first use. The file is written to a
// temporary name, synced, then linked into place: link(2) fails rather than
// overwrite, so two processes starting at once end up with the same token,
// and nobody ever reads a half-written one. The file's mode is 0600.
func LoadOrCreateToken(dir string) (string, error) {
	path := filepath.Join(dir, TokenFile)
	tok, err := readToken(path)
	if err == nil || !errors.Is(err, fs.ErrNotExist) {
		return tok, err
	}
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return "", fmt.Errorf("web: token: %w", err)
	}
	raw := make([]byte, 32)
	rand.Read(raw) // never fails (crypto/rand, Go 1.24)
	tok = base64.RawURLEncoding.EncodeToString(raw)

	tmp, err := os.CreateTemp(dir, ".token-*")
	if err != nil {
		return "", fmt.Errorf("web: token: %w", err)
	}
	defer os.Remove(tmp.Name())
	// CreateTemp already uses 0600; Chmod says so for whoever reads this.
	if err := tmp.Chmod(0o600); err == nil {
		_, err = tmp.WriteString(tok + "\n")
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return "", fmt.Errorf("web: token: write %s: %w", tmp.Name(), err)
	}
	if err := os.Link(tmp.Name(), path); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process was first
			return readToken(path)
		}
		return "", fmt.Errorf("web: token: %w", err)
	}
	if d, err := os.Open(dir); err == nil { // make the new name durable
		d.Sync()
		d.Close()
	}
	return tok, nil
}

// ReadToken reads the token from dir/token without creating it: what a
// client does.
func ReadToken(dir string) (string, error) {
	return readToken(filepath.Join(dir, TokenFile))
}

func readToken(path string) (string, error) {
	b, err := os.ReadFile(path)
	if err != nil {
		return "", fmt.Errorf("web: token: %w", err)
	}
	tok := strings.TrimSpace(string(b))
	if tok == "" {
		return "", fmt.Errorf("web: token: %s is empty", path)
	}
	return tok, nil
}
