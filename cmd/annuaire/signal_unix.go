//go:build unix

package main

import (
	"context"
	"io"
	"os"
	"os/signal"
	"syscall"
)

// notifyStop returns a context that ends when the process is asked to
// stop: Ctrl-C (SIGINT), or SIGTERM from "annuaire stop", kill or systemd.
func notifyStop(ctx context.Context, _ io.Writer) (context.Context, context.CancelFunc) {
	return signal.NotifyContext(ctx, os.Interrupt, syscall.SIGTERM)
}

// requestStop asks process pid to stop the way notifyStop listens for.
func requestStop(pid int) error { return syscall.Kill(pid, syscall.SIGTERM) }
