package atomicfile

import (
	"os"

	"golang.org/x/sys/windows"
)

// replace moves tmp over path; MOVEFILE_WRITE_THROUGH returns once the
// move is on disk, which Windows offers instead of a directory fsync.
func replace(tmp, path string) error {
	return move(tmp, path, windows.MOVEFILE_REPLACE_EXISTING|windows.MOVEFILE_WRITE_THROUGH)
}

// link moves tmp to path unless path exists: without
// MOVEFILE_REPLACE_EXISTING, MoveFileEx fails with ERROR_ALREADY_EXISTS,
// which matches fs.ErrExist. Unlike a hard link it works on FAT too.
func link(tmp, path string) error {
	return move(tmp, path, windows.MOVEFILE_WRITE_THROUGH)
}

func move(tmp, path string, flags uint32) error {
	from, err := windows.UTF16PtrFromString(tmp)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: tmp, New: path, Err: err}
	}
	to, err := windows.UTF16PtrFromString(path)
	if err != nil {
		return &os.LinkError{Op: "rename", Old: tmp, New: path, Err: err}
	}
	if err := windows.MoveFileEx(from, to, flags); err != nil {
		return &os.LinkError{Op: "rename", Old: tmp, New: path, Err: err}
	}
	return nil
}

// SyncDir does nothing on Windows, which has no directory fsync:
// FlushFileBuffers needs a handle open for writing, which a directory
// cannot be ("Access is denied", microsoft/go#1907). It needs none: a
// file's own flush "ensures that the directory structure is persisted to
// stable storage" ([MS-FSA] 2.1.5.7), and the moves above are written
// through.
func SyncDir(dir string) error { return nil }
