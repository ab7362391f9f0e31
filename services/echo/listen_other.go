//go:build !unix

package echo

import (
	"context"
	"fmt"
	"net"
	"runtime"
)

// Listen opens a TCP listening socket on address (see listen_unix.go).
// Here only the system's backlog is possible: Go makes no net.Listener of
// a socket made by hand on this system, and net.Listen asks for the
// largest queue (SOMAXCONN).
func Listen(ctx context.Context, network, address string, backlog int) (net.Listener, error) {
	if backlog > 0 {
		return nil, &net.OpError{Op: "listen", Net: network,
			Err: fmt.Errorf("a backlog of %d needs a Unix system (on %s, only the system's: 0)", backlog, runtime.GOOS)}
	}
	var lc net.ListenConfig
	return lc.Listen(ctx, network, address)
}
