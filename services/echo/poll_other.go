//go:build !linux || portable

package echo

import "net"

// pollUnsupported says why poll mode (poll_linux.go) is not here.
//
// The build tag portable compiles this file on Linux too, so that CI runs
// the tests through it (.ci/run).
const pollUnsupported = "needs Linux's epoll(7)"

func (s *Server) servePoll(net.Listener) error { return CheckMode("poll") }
