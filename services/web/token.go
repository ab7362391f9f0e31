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

	"github.com/annuaire/annuaire/internal/atomicfile"
)

// TokenFile is the name of the token's file in the data directory.
const TokenFile = "token"

// LoadOrCreateToken returns the API token kept in dir/token, creating the
// directory and a random token on first use. The file (mode 0600) appears
// whole or not at all, and never replaces one already there: two
// processes starting at once end up with the same token (see
// atomicfile.WriteNew).
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
	if err := atomicfile.WriteNew(path, []byte(tok+"\n"), 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) { // another process was first
			return readToken(path)
		}
		return "", fmt.Errorf("web: token: %w", err)
	}
	return tok, nil
}

// ReadToken reads the token from dir/token without creating it: what a
// client does.
func ReadToken(dir string) (string, error) {
	return readToken(filepath.Join(dir, TokenFile))
}

// ReadTokenFile reads a token from a file of its own: --token-file.
func ReadTokenFile(path string) (string, error) { return readToken(path) }

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
