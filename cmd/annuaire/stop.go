package main

import (
	"context"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/annuaire/annuaire/registry"
)

const stopAbout = `Stops the annuaire serving the data directory --data, as Ctrl-C would:
its services deregister, connections in flight drain (serve --drain),
then it exits. On Unix stop sends SIGTERM to the pid that holds the
directory's lock, on Windows it sets the server's stop event; it waits
until the lock is released, at most --timeout.

Like "systemctl stop", stopping a server that is not running succeeds:
it says "not running" and exits 0. A data directory that does not exist
is an error (exit 1): --data names the wrong one.
`

const stopExample = `
$ annuaire stop --data /tmp/lab
stopped annuaire (pid 48211)
$ annuaire stop --data /tmp/lab
not running: no annuaire serves /tmp/lab
`

// runStop stops the annuaire that holds a data directory's lock, the way a
// real server is stopped (the course: "il faut prévoir une commande pour
// arrêter proprement le serveur"): SIGTERM (on Windows, its stop event;
// see requestStop), then wait for it to exit.
func runStop(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "stop")
	data := fs.String("data", defaultDataDir(e), "state `directory` of the annuaire to stop")
	timeout := fs.Duration("timeout", 15*time.Second, "how long to wait for it to exit")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{err: fmt.Errorf("unexpected argument %q: the data directory is --data DIR", fs.Arg(0))}
	}
	if _, err := os.Stat(*data); errors.Is(err, os.ErrNotExist) {
		return fmt.Errorf("stop: data directory %s does not exist: --data names the directory the server was started with", *data)
	} else if err != nil {
		return fmt.Errorf("stop: %w", err)
	}
	pid, err := registry.LockOwner(*data)
	if errors.Is(err, registry.ErrNotLocked) {
		fmt.Fprintf(e.stdout, "not running: no annuaire serves %s\n", *data)
		return nil
	}
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
