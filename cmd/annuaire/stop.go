package main

import (
	"context"
	"fmt"
	"time"

	"github.com/annuaire/annuaire/registry"
)

// runStop stops the annuaire that holds a data directory's lock, the way a
// real server is stopped (the course: "il faut prévoir une commande pour
// arrêter proprement le serveur"): SIGTERM (on Windows, its stop event;
// see requestStop), then wait for it to exit.
func runStop(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "stop", "[--data DIR] [--timeout 15s]")
	data := fs.String("data", defaultDataDir(e), "state `directory` of the annuaire to stop")
	timeout := fs.Duration("timeout", 15*time.Second, "how long to wait for it to exit")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return usageError{fmt.Errorf("stop takes no arguments, got %q", fs.Args())}
	}
	pid, err := registry.LockOwner(*data)
	if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	if err := requestStop(pid); err != nil {
		return fmt.Errorf("stop: signal pid %d: %w", pid, err)
	}
	deadline := time.NewTimer(*timeout)
	defer deadline.Stop()
	tick := time.NewTicker(50 * time.Millisecond)
	defer tick.Stop()
	for {
		select {
		case <-ctx.Done():
			return ctx.Err()
		case <-deadline.C:
			return fmt.Errorf("stop: pid %d still running after %v", pid, *timeout)
		case <-tick.C:
			// The lock is released last, after the servers closed their
			// ports and the registry its files: then it has stopped.
			if owner, err := registry.LockOwner(*data); err != nil || owner != pid {
				fmt.Fprintf(e.stdout, "stopped annuaire (pid %d)\n", pid)
				return nil
			}
		}
	}
}
