//go:build !linux

package wire

// batched is the batched readers of Linux (loop_linux.go); elsewhere one
// reader takes each datagram (loop.go).
func (l *PacketLoop) batched() bool { return false }
