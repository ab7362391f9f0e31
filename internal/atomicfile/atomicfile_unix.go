//go:build unix

package atomicfile

import (
	"os"
)

// replace is rename(2): it replaces path in one step (POSIX).
func replace(tmp, path string) error { return os.Rename(tmp, path) }

// link is link(2), which fails with EEXIST rather than replace path.
func link(tmp, path string) error { return os.Link(tmp, path) }

// SyncDir fsyncs the directory dir, making durable the names created,
// renamed or removed in it: on Linux and the BSDs a file's own fsync
// does not cover the directory entry that names it (fsync(2)).
func SyncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return err
	}
	err = d.Sync()
	if cerr := d.Close(); err == nil {
		err = cerr
	}
	return err
}
