package atomicfile

import (
	"errors"
	"io/fs"
	"os"
	"path/filepath"
	"runtime"
	"testing"
)

// onlyNames fails t unless dir holds exactly the files named: no
// temporary file may stay behind, whatever happened.
func onlyNames(t *testing.T, dir string, names ...string) {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	var got []string
	for _, e := range ents {
		got = append(got, e.Name())
	}
	if len(got) != len(names) {
		t.Fatalf("directory holds %q, want %q", got, names)
	}
	for i := range names {
		if got[i] != names[i] {
			t.Fatalf("directory holds %q, want %q", got, names)
		}
	}
}

func content(t *testing.T, path string) string {
	t.Helper()
	b, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestWriteFile(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "pid")
	if err := WriteFile(path, []byte("1\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := WriteFile(path, []byte("22\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	if got := content(t, path); got != "22\n" {
		t.Errorf("content %q, want %q", got, "22\n")
	}
	if runtime.GOOS != "windows" {
		st, err := os.Stat(path)
		if err != nil {
			t.Fatal(err)
		}
		if st.Mode().Perm() != 0o600 {
			t.Errorf("mode %v, want 0600", st.Mode().Perm())
		}
	}
	onlyNames(t, dir, "pid")
}

// A mode is set as asked, not masked by the umask nor left at
// CreateTemp's 0600.
func TestWriteFileMode(t *testing.T) {
	if runtime.GOOS == "windows" {
		t.Skip("Windows files have no Unix mode")
	}
	path := filepath.Join(t.TempDir(), "public")
	if err := WriteFile(path, []byte("x"), 0o644); err != nil {
		t.Fatal(err)
	}
	st, err := os.Stat(path)
	if err != nil {
		t.Fatal(err)
	}
	if st.Mode().Perm() != 0o644 {
		t.Errorf("mode %v, want 0644", st.Mode().Perm())
	}
}

func TestWriteNew(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	if err := WriteNew(path, []byte("first\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	err := WriteNew(path, []byte("second\n"), 0o600)
	if !errors.Is(err, fs.ErrExist) {
		t.Fatalf("second WriteNew: %v, want an error matching fs.ErrExist", err)
	}
	if got := content(t, path); got != "first\n" {
		t.Errorf("content %q, want the first writer's %q", got, "first\n")
	}
	onlyNames(t, dir, "token")
}

// Of writers racing to create one file, exactly one wins, and the file
// holds the winner's content whole.
func TestWriteNewRace(t *testing.T) {
	dir := t.TempDir()
	path := filepath.Join(dir, "token")
	const n = 8
	errs := make(chan error, n)
	for i := range n {
		go func() { errs <- WriteNew(path, []byte{'a' + byte(i), '\n'}, 0o600) }()
	}
	won := 0
	for range n {
		switch err := <-errs; {
		case err == nil:
			won++
		case !errors.Is(err, fs.ErrExist):
			t.Errorf("WriteNew: %v", err)
		}
	}
	if won != 1 {
		t.Errorf("%d writers won, want 1", won)
	}
	if got := content(t, path); len(got) != 2 || got[1] != '\n' {
		t.Errorf("content %q, want one writer's whole line", got)
	}
	onlyNames(t, dir, "token")
}

func TestWriteFileNoDirectory(t *testing.T) {
	path := filepath.Join(t.TempDir(), "missing", "pid")
	if err := WriteFile(path, []byte("1\n"), 0o600); !errors.Is(err, fs.ErrNotExist) {
		t.Errorf("WriteFile into a missing directory: %v, want fs.ErrNotExist", err)
	}
}
