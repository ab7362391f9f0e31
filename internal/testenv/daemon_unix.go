//go:build unix

package testenv

import (
	"os"
	"syscall"
)

// stop asks p to stop, as a service manager would.
func stop(p *os.Process) error { return p.Signal(syscall.SIGTERM) }
