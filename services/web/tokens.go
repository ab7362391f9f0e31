package web

import (
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/base64"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"io/fs"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/annuaire/annuaire/internal/atomicfile"
)

// Student tokens. The administrator's token (DATA/token) may write
// anything; a student's token, made by `annuaire token add NAME`, may
// register, heartbeat and deregister its own services only (registry's
// owners), within the limits the server sets for such tokens.
//
// Each token is a file of its own, DATA/tokens/NAME.json, holding the
// SHA-256 of the token's secret, never the secret: the token is shown once,
// when it is made. A file per token needs no lock: adding is creating a
// file whole or not at all (atomicfile.WriteNew: of two adds of one name,
// one wins), revoking is removing it, and adds and revokes of different
// names never meet. The server reads a token's file on each request that
// presents it, as sshd reads authorized_keys on each login: a token added
// works at once and a token revoked stops at once, whether the server was
// running or not when the command ran, and the server needs no admin API
// of its own to learn of either.
//
// A token reads NAME.SECRET, so the server knows which file to read and
// its log can say whose token failed. SHA-256 suffices for the hash: the
// secret is 256 random bits, not a password that a slow hash would
// protect from guessing.

// TokensDir is the directory of the student tokens, in the data directory.
const TokensDir = "tokens"

// MaxTokenName bounds a student token's name: with --token-prefix the
// student's service names start with it, and a service name is at most 15
// characters (RFC 6335 section 5.1).
const MaxTokenName = 12

// TokenInfo is what is kept of a student token: its file's JSON.
type TokenInfo struct {
	Name    string    `json:"name"`
	SHA256  string    `json:"sha256"` // of the secret, in hex
	Created time.Time `json:"created"`
	// MaxInstances is how many instances the token may hold at once; 0
	// means the server's default (Server.TokenMaxInstances).
	MaxInstances int `json:"max_instances,omitempty"`
}

// Tokens is the store of student tokens in a data directory.
type Tokens struct {
	Dir string // DATA/tokens
}

// TokensIn returns the store of the data directory dir.
func TokensIn(dir string) *Tokens { return &Tokens{Dir: filepath.Join(dir, TokensDir)} }

// ErrTokenExists and ErrNoToken are what Add and Revoke say of a name
// that is, or is not, taken.
var (
	ErrTokenExists = errors.New("a token with that name exists")
	ErrNoToken     = errors.New("no token with that name")
)

// ValidTokenName checks a student token's name: 1 to MaxTokenName
// lowercase letters, digits and hyphens, a letter first, no hyphen last or
// doubled, so that NAME- can start a service name. "admin" is the
// administrator's.
func ValidTokenName(name string) error {
	switch {
	case name == "":
		return errors.New("empty")
	case len(name) > MaxTokenName:
		return fmt.Errorf("longer than %d characters (with --token-prefix, NAME- starts the student's service names, which have 15 at most)", MaxTokenName)
	case name == "admin":
		return errors.New("admin is the administrator's token (DATA/token)")
	case name[0] < 'a' || name[0] > 'z':
		return errors.New("must start with a lowercase letter")
	case name[len(name)-1] == '-' || strings.Contains(name, "--"):
		return errors.New("a hyphen may not end it or double")
	}
	for i := 0; i < len(name); i++ {
		if c := name[i]; !(c >= 'a' && c <= 'z' || c >= '0' && c <= '9' || c == '-') {
			return fmt.Errorf("%q is not a lowercase letter, digit or hyphen", c)
		}
	}
	return nil
}

func (t *Tokens) path(name string) string { return filepath.Join(t.Dir, name+".json") }

// Add makes a token for name, keeps its hash, and returns the token: the
// only time it is seen. maxInstances 0 means the server's default.
func (t *Tokens) Add(name string, maxInstances int) (string, error) {
	if err := ValidTokenName(name); err != nil {
		return "", fmt.Errorf("token name %q: %w", name, err)
	}
	if maxInstances < 0 {
		return "", fmt.Errorf("max instances %d: must be 0 (the server's default) or more", maxInstances)
	}
	raw := make([]byte, 32)
	rand.Read(raw) // never fails (crypto/rand, Go 1.24)
	secret := base64.RawURLEncoding.EncodeToString(raw)
	sum := sha256.Sum256([]byte(secret))
	info := TokenInfo{Name: name, SHA256: hex.EncodeToString(sum[:]), Created: time.Now().UTC().Truncate(time.Second), MaxInstances: maxInstances}
	b, err := json.MarshalIndent(info, "", "  ")
	if err != nil {
		return "", err
	}
	if err := os.MkdirAll(t.Dir, 0o700); err != nil {
		return "", fmt.Errorf("tokens: %w", err)
	}
	if err := atomicfile.WriteNew(t.path(name), append(b, '\n'), 0o600); err != nil {
		if errors.Is(err, fs.ErrExist) {
			return "", fmt.Errorf("token %s: %w", name, ErrTokenExists)
		}
		return "", fmt.Errorf("tokens: %w", err)
	}
	return name + "." + secret, nil
}

// Revoke removes name's token: the next request that presents it is
// refused. The instances it registered stay, still its own.
func (t *Tokens) Revoke(name string) error {
	if err := ValidTokenName(name); err != nil {
		return fmt.Errorf("token name %q: %w", name, err)
	}
	err := os.Remove(t.path(name))
	if errors.Is(err, fs.ErrNotExist) {
		return fmt.Errorf("token %s: %w", name, ErrNoToken)
	}
	if err != nil {
		return fmt.Errorf("tokens: %w", err)
	}
	return atomicfile.SyncDir(t.Dir)
}

// List returns every token, by name. A file that cannot be read is an
// error that names it.
func (t *Tokens) List() ([]TokenInfo, error) {
	ents, err := os.ReadDir(t.Dir)
	if errors.Is(err, fs.ErrNotExist) {
		return nil, nil
	}
	if err != nil {
		return nil, fmt.Errorf("tokens: %w", err)
	}
	var out []TokenInfo
	for _, e := range ents {
		name, ok := strings.CutSuffix(e.Name(), ".json")
		if !ok || ValidTokenName(name) != nil {
			continue // a temporary file, or not ours
		}
		info, err := t.read(name)
		if err != nil {
			return nil, err
		}
		out = append(out, info)
	}
	slices.SortFunc(out, func(a, b TokenInfo) int { return strings.Compare(a.Name, b.Name) })
	return out, nil
}

func (t *Tokens) read(name string) (TokenInfo, error) {
	var info TokenInfo
	b, err := os.ReadFile(t.path(name))
	if err != nil {
		return info, fmt.Errorf("tokens: %w", err)
	}
	if err := json.Unmarshal(b, &info); err != nil {
		return info, fmt.Errorf("tokens: %s: %w", t.path(name), err)
	}
	if info.Name != name || len(info.SHA256) != 2*sha256.Size {
		return info, fmt.Errorf("tokens: %s: not a token file (name %q, sha256 of %d hex digits)", t.path(name), info.Name, len(info.SHA256))
	}
	return info, nil
}

// Check returns the token's record if token is one of the store's: its
// name's file exists and holds its secret's hash. The comparison takes the
// same time whatever the secret.
func (t *Tokens) Check(token string) (TokenInfo, bool) {
	name, secret, ok := strings.Cut(token, ".")
	if !ok || ValidTokenName(name) != nil || secret == "" {
		return TokenInfo{}, false
	}
	info, err := t.read(name)
	if err != nil {
		return TokenInfo{}, false
	}
	want, err := hex.DecodeString(info.SHA256)
	sum := sha256.Sum256([]byte(secret))
	if err != nil || subtle.ConstantTimeCompare(sum[:], want) != 1 {
		return TokenInfo{}, false
	}
	return info, true
}

// TokenName is the name part of a student token, "" for any other.
func TokenName(token string) string {
	name, _, ok := strings.Cut(token, ".")
	if !ok || ValidTokenName(name) != nil {
		return ""
	}
	return name
}
