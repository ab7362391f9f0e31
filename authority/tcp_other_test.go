//go:build !unix

package authority

import "syscall"

// slowNetwork leaves the segment size and buffers to the system where
// they cannot be set this way before connecting.
func slowNetwork(network, address string, c syscall.RawConn) error { return nil }
