package main

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"

	"github.com/annuaire/annuaire/registry"
)

// openRegistry opens the registry in dir for serve. A damaged journal is
// refused unless recover is set; the refusal then says how to accept the
// loss.
func openRegistry(dir string, logger *slog.Logger, recover bool) (*registry.Registry, error) {
	reg, err := registry.Open(dir, registry.Options{Logger: logger, Recover: recover})
	if errors.Is(err, registry.ErrDamaged) {
		return nil, fmt.Errorf("%w.\nTo accept the loss: annuaire repair --data %s, or annuaire serve --recover", err, dir)
	}
	return reg, err
}

// runRepair accepts the loss of what a damaged journal holds, offline:
// what "annuaire serve --recover" does before serving, without serving,
// as pg_resetwal or etcdutl are run on a stopped server. It says what is
// damaged, recovers every intact record, keeps the damaged segments aside
// and logs each record dropped; a journal without damage is left as it is.
func runRepair(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "repair", "[--data DIR]")
	data := fs.String("data", defaultDataDir(e), "state `directory` to repair, not in use by a running annuaire")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		fs.Usage()
		return usageError{fmt.Errorf("repair: unexpected argument %q", fs.Arg(0))}
	}
	// registry.Open creates a missing directory: a typo must not repair
	// an empty one into existence.
	if _, err := os.Stat(*data); err != nil {
		return fmt.Errorf("repair: data directory: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(e.stderr, nil))
	reg, err := registry.Open(*data, registry.Options{Logger: logger})
	repaired := errors.Is(err, registry.ErrDamaged)
	if repaired { // the recovery logs each damaged stretch and what it held
		reg, err = registry.Open(*data, registry.Options{Logger: logger, Recover: true})
	}
	if errors.Is(err, registry.ErrLocked) {
		return fmt.Errorf("repair: %w: stop it first (annuaire stop --data %s)", err, *data)
	}
	if err != nil {
		return fmt.Errorf("repair: %w", err)
	}
	defer reg.Close()
	n := 0
	for range reg.Snapshot().All() {
		n++
	}
	if repaired {
		fmt.Fprint(e.stdout, "repaired: every intact record kept, the damaged segments kept aside as FILE.damaged, the serial moved past the loss; ")
	} else {
		fmt.Fprint(e.stdout, "no damage found; ")
	}
	fmt.Fprintf(e.stdout, "%s holds %d instances, serial %d\n", *data, n, reg.Snapshot().Serial())
	return nil
}
