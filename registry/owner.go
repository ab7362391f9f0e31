package registry

import (
	"errors"
	"fmt"
	"strconv"
)

// Ownership. A registration made with a student's token belongs to that
// token: the instance, and the host it created, carry the token's name as
// their Owner, journaled with the row (and so kept by checkpoints and
// replays; rows of journals older than owners have none). A write made as
// an owner may change only that owner's rows; a write made as no one (the
// administrator's token, DNS UPDATE with a TSIG key, the hosted services)
// may change every row. This file is the one place that rule lives.

// ErrNotOwner is wrapped by the error of a write that would change a row
// another owner holds.
var ErrNotOwner = errors.New("not the owner")

// ErrQuota is wrapped by the error of a registration that would give its
// owner more instances than it may hold.
var ErrQuota = errors.New("quota reached")

// MaxOwnerLen bounds an owner's name: it is a token's name.
const MaxOwnerLen = 64

// An OwnerError says whose row a write tried to change.
type OwnerError struct {
	What  string // "instance \"echo-tcp-h-127-0-0-2-4000\"", "host \"h-127-0-0-2\""
	Owner string // the row's owner; "" for the administrator
	By    string // who tried
}

func (e *OwnerError) Error() string {
	owner := e.Owner
	if owner == "" {
		owner = "the administrator"
	}
	return fmt.Sprintf("%s belongs to %s, not to %s", e.What, owner, e.By)
}

func (e *OwnerError) Unwrap() error { return ErrNotOwner }

// A QuotaError says that an owner holds as many instances as it may.
type QuotaError struct {
	Owner string
	Max   int
}

func (e *QuotaError) Error() string {
	n := strconv.Itoa(e.Max) + " instances"
	if e.Max == 1 {
		n = "1 instance"
	}
	return e.Owner + " already holds " + n + ", the most its token may"
}

func (e *QuotaError) Unwrap() error { return ErrQuota }

// mayChange reports whether a write made as by may change a row that
// owner holds.
func mayChange(by, owner string) bool { return by == "" || SameName(by, owner) }

// checkOwner refuses a write made as by to what, which owner holds.
func checkOwner(what, by, owner string) error {
	if mayChange(by, owner) {
		return nil
	}
	return &OwnerError{What: what, Owner: owner, By: by}
}

func validOwner(owner string) error {
	if len(owner) > MaxOwnerLen || !printableASCII(owner) {
		return &FieldError{"owner", owner, "must be at most " + strconv.Itoa(MaxOwnerLen) + " printable ASCII bytes"}
	}
	return nil
}

// Deregister removes the instance id as by: "" for the administrator, who
// may remove any, else a token's name, which may remove only its own.
func (tx *Tx) Deregister(id, by string) error {
	inst, ok := tx.Instance(id)
	if !ok {
		return fmt.Errorf("registry: instance %q: %w", id, ErrNotFound)
	}
	if err := checkOwner("instance "+strconv.Quote(inst.ID), by, inst.Owner); err != nil {
		return err
	}
	return tx.DeleteInstance(inst.ID)
}

// checkService refuses a registration made as by into a service that
// another owner's instances, or the administrator's, already answer for:
// a service name is its first registrant's, or a student could put an
// endpoint of theirs among another's SRV records, and half the clients
// would reach it. A service whose instances all left is free again.
func (tx *Tx) checkService(by string, inst *Instance) error {
	if by == "" {
		return nil
	}
	for other := range tx.Instances(inst.Proto, inst.Service) {
		if other.ID != inst.ID && !mayChange(by, other.Owner) {
			return &OwnerError{What: "service " + strconv.Quote("_"+inst.Service+"._"+inst.Proto), Owner: other.Owner, By: by}
		}
	}
	return nil
}

// MayChange reports whether a write made as by ("" for the administrator)
// may change the instance: heartbeats, for one, are writes.
func (inst *Instance) MayChange(by string) error {
	return checkOwner("instance "+strconv.Quote(inst.ID), by, inst.Owner)
}

// Owned returns how many instances owner holds.
func (s *reader) Owned(owner string) int {
	if s.tx != nil {
		s.note(tableOwners, indexID, []any{FoldName(owner)})
		p, err := s.tx.ownerCount(FoldName(owner))
		if err != nil {
			return 0
		}
		return p.n
	}
	raw := s.first(tableOwners, indexID, FoldName(owner))
	if raw == nil {
		return 0
	}
	return raw.(*ownerCount).N
}

// An ownerCount counts the instances an owner holds, so that a quota
// costs one row per owner rather than an index entry per instance.
type ownerCount struct {
	Name string // folded
	N    int
}

// ownerCount returns the pending count of a folded owner's instances,
// loading it from the table on first use.
func (tx *Tx) ownerCount(name string) (*pendingRef, error) {
	if p := tx.owners[name]; p != nil {
		return p, nil
	}
	p := &pendingRef{}
	raw, err := tx.txn.First(tableOwners, indexID, name)
	if err != nil {
		return nil, fmt.Errorf("registry: instances of %s: %w", name, err)
	}
	if raw != nil {
		p.n, p.stored = raw.(*ownerCount).N, true
	}
	if tx.owners == nil {
		tx.owners = make(map[string]*pendingRef)
	}
	tx.owners[name] = p
	return p, nil
}

// countOwner keeps the owner counts in step with the instances table; the
// row is written by flushTypes. The administrator's rows are not counted.
func (tx *Tx) countOwner(owner string, delta int) error {
	if owner == "" {
		return nil
	}
	p, err := tx.ownerCount(owner) // Instance.Owner is stored folded
	if err != nil {
		return err
	}
	p.n += delta
	return nil
}

// flushOwners writes the pending owner counts.
func (tx *Tx) flushOwners() {
	for name, p := range tx.owners {
		row := ownerCount{Name: name, N: p.n}
		if row.N <= 0 {
			if p.stored {
				if err := tx.txn.Delete(tableOwners, &row); err != nil {
					tx.typesErr = errors.Join(tx.typesErr, fmt.Errorf("registry: delete the count of %s's instances: %w", name, err))
				}
			}
			continue
		}
		if err := tx.txn.Insert(tableOwners, &row); err != nil {
			tx.typesErr = errors.Join(tx.typesErr, fmt.Errorf("registry: count %s's instances: %w", name, err))
		}
	}
	clear(tx.owners)
}
