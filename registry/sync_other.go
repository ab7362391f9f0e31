//go:build !linux || portable

package registry

import "os"

// fdatasync is os.File.Sync where Go offers no fdatasync: fsync(2) on the
// BSDs, FlushFileBuffers on Windows, and fcntl(F_FULLFSYNC) on macOS. The
// last is what durability needs there: macOS's fsync(2) moves the data to
// the drive, but "the drive itself may not physically write the data to
// the platters for quite some time and it may be written in an
// out-of-order sequence" (Apple's fsync(2)), so a power cut can lose
// frames the journal counted as durable, or keep a later one without an
// earlier. F_FULLFSYNC asks the drive to flush its cache; os.File.Sync
// has used it on macOS since Go 1.12 (golang/go#26650), falling back to
// fsync where a filesystem refuses it (SMB).
//
// The build tag portable compiles this file on Linux too, so that CI runs
// the tests through it (.ci/run).
func fdatasync(f *os.File) error { return f.Sync() }
