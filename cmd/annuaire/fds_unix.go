//go:build unix

package main

import "syscall"

// fdLimit returns the soft RLIMIT_NOFILE, which the Go runtime raised to
// the hard limit at start, or 0 if it cannot be read.
func fdLimit() int {
	var rl syscall.Rlimit
	if err := syscall.Getrlimit(syscall.RLIMIT_NOFILE, &rl); err != nil || rl.Cur > 1<<30 {
		return 0
	}
	return int(rl.Cur)
}
