package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strings"
)

// A Change is one row written by an update, in the order it was written.
// Row is the row as written, or, when Delete is set, the row removed. Old
// is the row as it was before the change: nil when the row is new, the
// removed row itself for a delete. An IXFR (RFC 1995) has to send the
// records it deletes; a transfer rewinds history by undoing changes.
// Rows are shared with the registry: never modify them.
type Change struct {
	Delete bool
	Row    Row
	Old    Row
}

// A Row is one row of the registry as a Change carries it: an *Instance
// or a *Host. Each kind of row says, in its own file, how it is checked,
// written back, replayed and indexed, so that what handles changes
// (journal replay, IXFR's rewind, the wire cache's freshness) has no
// switch over kinds: a new kind of row is a new implementation, named in
// newRow for the journal.
type Row interface {
	// kind names the row in a journal record: "instance", "host".
	kind() string
	// table is the memdb table that holds it.
	table() string
	// check validates a row decoded from the journal as a registration
	// would be, filling in what older records left out.
	check() error
	// put writes the row as an update would, and remove deletes the row
	// with its key: the Tx's rules apply (Change.Undo).
	put(tx *Tx) error
	remove(tx *Tx) error
	// restore writes the row exactly as journaled, replacing the row with
	// its key, and drop deletes that row if it is there (replay).
	restore(tx *Tx) error
	drop(tx *Tx) error
	// derived appends the keys of the rows the registry derives from
	// rows of this kind (see Snapshot.Touched) that a change from before
	// to after writes; either may be nil, for a new or a deleted row.
	derived(r *reader, keys []Key, before, after Row) []Key
}

// newRow returns an empty row of the kind a journal record names.
func newRow(kind string) (Row, bool) {
	switch kind {
	case "instance":
		return new(Instance), true
	case "host":
		return new(Host), true
	}
	return nil, false
}

// Undo reverts c in tx through the Tx's rules: a row replaced or removed
// is put back as it was, a new row is removed. Undoing a change set's
// changes newest first brings the registry back to where it was before it,
// through states it went through (Snapshot.History, an IXFR from an older
// serial).
func (c Change) Undo(tx *Tx) error {
	if c.Old != nil {
		return c.Old.put(tx)
	}
	return c.Row.remove(tx)
}

// replay applies one journaled change as it was written. Derived rows (the
// types table, host reference counts) follow; host collection does not
// run, since the journal holds its deletes. Deleting a row that is not
// there is a no-op.
func (tx *Tx) replay(c Change) error {
	if tx.onReplay != nil {
		tx.onReplay()
	}
	if c.Delete {
		return c.Row.drop(tx)
	}
	return c.Row.restore(tx)
}

// check validates a decoded change as a registration would be: a record
// with a good checksum but bad content is damage too.
func (c Change) check() error {
	if c.Row == nil {
		return errors.New("change without a row")
	}
	if c.Old != nil && c.Old.kind() != c.Row.kind() {
		return fmt.Errorf("change from a %s to a %s", c.Old.kind(), c.Row.kind())
	}
	if err := c.Row.check(); err != nil {
		return err
	}
	if c.Old != nil {
		return c.Old.check()
	}
	return nil
}

// MarshalJSON writes {"delete":true,"KIND":ROW,"old_KIND":OLD}, the form
// journal records have always had.
func (c Change) MarshalJSON() ([]byte, error) {
	if c.Row == nil {
		return nil, errors.New("registry: change without a row")
	}
	b := []byte{'{'}
	if c.Delete {
		b = append(b, `"delete":true,`...)
	}
	row, err := json.Marshal(c.Row)
	if err != nil {
		return nil, err
	}
	b = append(append(append(append(b, '"'), c.Row.kind()...), `":`...), row...)
	if c.Old != nil {
		old, err := json.Marshal(c.Old)
		if err != nil {
			return nil, err
		}
		b = append(append(append(append(b, `,"old_`...), c.Old.kind()...), `":`...), old...)
	}
	return append(b, '}'), nil
}

// UnmarshalJSON reads what MarshalJSON writes. A null row is no row.
func (c *Change) UnmarshalJSON(data []byte) error {
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(data, &fields); err != nil {
		return err
	}
	*c = Change{}
	for name, raw := range fields {
		if name == "delete" {
			if err := json.Unmarshal(raw, &c.Delete); err != nil {
				return fmt.Errorf("change field delete: %w", err)
			}
			continue
		}
		kind, old := strings.CutPrefix(name, "old_")
		row, ok := newRow(kind)
		if !ok {
			return fmt.Errorf("change has an unknown field %q", name)
		}
		if bytes.Equal(raw, []byte("null")) {
			continue
		}
		if err := json.Unmarshal(raw, row); err != nil {
			return fmt.Errorf("change field %s: %w", name, err)
		}
		dst := &c.Row
		if old {
			dst = &c.Old
		}
		if *dst != nil {
			return fmt.Errorf("change has two rows: %s and %s", (*dst).kind(), kind)
		}
		*dst = row
	}
	return nil
}
