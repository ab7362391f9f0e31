//go:build !linux || portable

package echo

import "net"

// epollUnsupported says why epoll mode (epoll_linux.go) is not here.
//
// The build tag portable compiles this file on Linux too, so that CI runs
// the tests through it (.ci/run).
const epollUnsupported = "needs Linux's epoll(7)"

func (s *Server) serveEpoll(net.Listener) error { return CheckMode("epoll") }
