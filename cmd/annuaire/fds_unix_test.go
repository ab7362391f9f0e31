//go:build unix

package main

import (
	"fmt"
	"syscall"
)

// setFileLimit sets RLIMIT_NOFILE, soft and hard, to n: what a child
// process of a test runs under.
func setFileLimit(n string) error {
	var rl syscall.Rlimit
	// Scanned into the field, whose type is the system's (uint64 on
	// Linux, int64 on FreeBSD).
	if _, err := fmt.Sscan(n, &rl.Cur); err != nil {
		return err
	}
	rl.Max = rl.Cur
	return syscall.Setrlimit(syscall.RLIMIT_NOFILE, &rl)
}
