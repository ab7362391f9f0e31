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
// loss. A directory another annuaire holds says how to stop it.
func openRegistry(dir string, logger *slog.Logger, recover bool) (*registry.Registry, error) {
	reg, err := registry.Open(dir, registry.Options{Logger: logger, Recover: recover})
	if errors.Is(err, registry.ErrDamaged) {
		return nil, fmt.Errorf("%w.\nTo accept the loss: annuaire repair --data %s, or annuaire serve --recover", err, dir)
	}
	if errors.Is(err, registry.ErrLocked) {
		return nil, fmt.Errorf("%w: stop it with annuaire stop --data %s, or give this one another --data", err, dir)
	}
	return reg, err
}

const repairAbout = `A damaged journal makes "annuaire serve" refuse to start, naming the
file, the offset and what would be lost. repair accepts that loss, on a
stopped server, as pg_resetwal or etcdutl do: it keeps every intact
record, before the damage and after it, sets the damaged segments aside
as FILE.damaged, logs each record dropped and moves the zone's serial
past the loss (secondaries then transfer the zone whole). A journal
without damage is left as it is. "annuaire serve --recover" does the
same at start.
`

const repairExample = `
$ annuaire repair --data /tmp/annuaire-data
level=ERROR msg="journal damaged: dropped what it held, recovered every intact record around it" file=/tmp/annuaire-data/journal.0000000000000001 offset=7204 bytes=336 reason="checksum mismatch (crc32c 0bf30607, header says 79aeb86c)" lost="the change set of serial 1796408878" intact_after=20
level=WARN msg="damaged journal segment kept aside" file=/tmp/annuaire-data/journal.0000000000000001 kept_in=/tmp/annuaire-data/journal.0000000000000001.damaged
level=WARN msg="serial moved past every serial the lost records could have used: secondaries will transfer the recovered zone whole" from=1796408898 to=1796408899
repaired: every intact record kept, the damaged segments kept aside as FILE.damaged, the serial moved past the loss; /tmp/annuaire-data holds 39 instances, serial 1796408899
`

// runRepair accepts the loss of what a damaged journal holds, offline:
// what "annuaire serve --recover" does before serving, without serving,
// as pg_resetwal or etcdutl are run on a stopped server. It says what is
// damaged, recovers every intact record, keeps the damaged segments aside
// and logs each record dropped; a journal without damage is left as it is.
func runRepair(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "repair")
	data := fs.String("data", defaultDataDir(e), "state `directory` to repair, not in use by a running annuaire")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() > 0 {
		return usageError{err: fmt.Errorf("unexpected argument %q: the data directory is --data DIR", fs.Arg(0))}
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
