//go:build !linux || portable

package wire

// batched is the batched readers of Linux (loop_linux.go); elsewhere one
// reader takes each datagram (loop.go). The build tag portable compiles
// this file on Linux too, so that CI runs the tests through it (.ci/run).
func (l *PacketLoop) batched() bool { return false }
