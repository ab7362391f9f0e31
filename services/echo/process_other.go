//go:build !unix

package echo

import (
	"context"
	"net"
)

// processUnsupported says why process mode (process_unix.go) is not
// here: its child inherits the accepted socket as a descriptor, which Go
// hands down only on Unix (exec.Cmd.ExtraFiles).
const processUnsupported = "needs a Unix system, whose children inherit the connection's descriptor"

func (s *Server) serveProcess(net.Listener) error { return CheckMode("process") }

// RunChild is process mode's exécutant, which only runs on Unix.
func RunChild(ctx context.Context, args []string) error { return CheckMode("process") }
