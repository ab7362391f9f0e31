// Package atomicfile writes small files that must be whole or absent, such
// as a token or a pid: a reader, or the system after a crash, finds the old
// content or the new, never a part of either.
//
// The file is written under a temporary name beside its final one (the
// same directory, hence the same filesystem), fsynced, then given its name
// in one step, and the directory is fsynced so that the name is durable
// too: the sequence SQLite and PostgreSQL use, and that ext4's
// auto_da_alloc only guesses at. Every step's error is returned.
package atomicfile

import (
	"io/fs"
	"os"
	"path/filepath"
)

// WriteFile writes data to path with mode perm, replacing what path held.
func WriteFile(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, replace)
}

// WriteNew writes data to path with mode perm if path does not exist yet.
// If it does, WriteNew returns an error matching fs.ErrExist and leaves it
// as it is: of two processes creating the same file at once, one wins and
// the other learns it, and both can then read the winner's content.
func WriteNew(path string, data []byte, perm fs.FileMode) error {
	return write(path, data, perm, link)
}

func write(path string, data []byte, perm fs.FileMode, commit func(tmp, path string) error) error {
	dir := filepath.Dir(path)
	f, err := os.CreateTemp(dir, "."+filepath.Base(path)+".tmp-*")
	if err != nil {
		return err
	}
	tmp := f.Name()
	// After a rename this finds nothing; after a link it removes the
	// temporary name, leaving the file under its final one.
	defer os.Remove(tmp)
	// CreateTemp's mode is 0600, whatever the umask; perm is what the
	// caller asked for, umask aside, as os.Chmod sets it.
	err = f.Chmod(perm)
	if err == nil {
		_, err = f.Write(data)
	}
	if err == nil {
		err = f.Sync()
	}
	if cerr := f.Close(); err == nil {
		err = cerr
	}
	if err != nil {
		return err
	}
	if err := commit(tmp, path); err != nil {
		return err
	}
	return SyncDir(dir)
}
