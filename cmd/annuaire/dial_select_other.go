//go:build !(darwin || dragonfly || freebsd || linux || netbsd || openbsd)

package main

import (
	"context"
	"errors"
	"net"
)

// errNoSelect refuses `dial --select` where select(2) cannot wait on stdin
// and a socket at once: Windows' select takes sockets only.
var errNoSelect = errors.New("--select waits in select(2) on stdin and the socket, which only Linux, macOS and the BSDs offer (Windows' select takes sockets only): dial without --select")

type selectRelay struct{}

func newSelectRelay(*env) (*selectRelay, error) { return nil, errNoSelect }

func (*selectRelay) run(context.Context, net.Conn, *dialTrace) (int64, int64, error) {
	return 0, 0, errNoSelect
}
