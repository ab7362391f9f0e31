package registry

import (
	"errors"
	"os"

	"golang.org/x/sys/windows"
)

// Windows locks byte ranges, and a locked range cannot be read by anyone
// else: the lock covers one byte far past the pid, so that LockOwner can
// read the pid while the server holds the lock. The system releases it
// when the process ends (LockFileEx).
const lockOffset = 1 << 40

func lockRange(f *os.File, flags uint32) error {
	ol := windows.Overlapped{OffsetHigh: lockOffset >> 32}
	return windows.LockFileEx(windows.Handle(f.Fd()), flags|windows.LOCKFILE_FAIL_IMMEDIATELY, 0, 1, 0, &ol)
}

// tryLock takes the lock on f without waiting; held reports that another
// process has it.
func tryLock(f *os.File) (held bool, err error) {
	err = lockRange(f, windows.LOCKFILE_EXCLUSIVE_LOCK)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return true, nil
	}
	return false, err
}

// isLocked reports whether a process holds f's lock, by trying to share it.
func isLocked(f *os.File) (bool, error) {
	err := lockRange(f, 0)
	if errors.Is(err, windows.ERROR_LOCK_VIOLATION) {
		return true, nil
	}
	if err != nil {
		return false, err
	}
	ol := windows.Overlapped{OffsetHigh: lockOffset >> 32}
	return false, windows.UnlockFileEx(windows.Handle(f.Fd()), 0, 1, 0, &ol)
}
