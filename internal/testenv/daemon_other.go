//go:build !unix

package testenv

import "os"

// stop kills p: elsewhere there is no signal to ask it.
func stop(p *os.Process) error { return p.Kill() }
