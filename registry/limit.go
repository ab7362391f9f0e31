package registry

import (
	"errors"
	"strconv"
)

// The total cap. Every instance costs memory (a row and its index entries,
// its host, its share of every snapshot's history), and anyone holding a
// token or a TSIG key can register: Registry.MaxInstances bounds what
// they can make the directory hold, as Tx.Register's one rule, whatever
// the front end (the HTTP API, DNS UPDATE, the CLI through the API). What
// is already held is never refused: a restart loads every instance its
// journal has, past the cap if the cap was lowered, and a registration
// that replaces an instance, or a Tx that removes one before adding one,
// adds nothing.

// DefaultMaxInstances is the cap annuaire serve sets unless told
// otherwise: generous (twice the million instances bench/run.sh loads
// and churns on), yet a bound on the memory registrations can take.
const DefaultMaxInstances = 2_000_000

// ErrTooMany is wrapped by the error of a registration that would take
// the directory past Registry.MaxInstances.
var ErrTooMany = errors.New("too many instances")

// A LimitError says that the directory holds as many instances as it may.
type LimitError struct {
	Held int // may exceed Max: the hosted services and a restart past a lowered cap are not refused
	Max  int
}

func (e *LimitError) Error() string {
	if e.Held > e.Max {
		return "the directory holds " + strconv.Itoa(e.Held) + " instances, past its limit of " + strconv.Itoa(e.Max) + ": deregister some first"
	}
	return "the directory holds " + strconv.Itoa(e.Max) + " instances, the most it may: deregister some first"
}

func (e *LimitError) Unwrap() error { return ErrTooMany }

// admit refuses one more instance past the cap, unless reg is exempt.
func (tx *Tx) admit(reg *Registration) error {
	if tx.maxInstances <= 0 || reg.Hosted || tx.instances+tx.added < tx.maxInstances {
		return nil
	}
	return &LimitError{Held: tx.instances + tx.added, Max: tx.maxInstances}
}

// NumInstances returns how many instances the snapshot holds.
func (s *Snapshot) NumInstances() int { return s.instances }
