//go:build !unix

package echo

import "net"

// selectUnsupported says why select mode (select_unix.go) is not here: its
// loop is written with Unix's select(2) and a pipe to wake it, and
// Windows' select takes sockets only.
const selectUnsupported = "needs a Unix system's select(2)"

func (s *Server) serveSelect(net.Listener) error { return CheckMode("select") }
