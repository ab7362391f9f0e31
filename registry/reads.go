package registry

import (
	"slices"
	"strings"

	"github.com/hashicorp/go-memdb"
)

// What a read depended on, and what a change touched.
//
// Data derived from several rows (the DNS server keeps packed answers,
// each built from the rows one lookup read) stays valid across a change
// that wrote none of those rows' index entries. Rather than keep a second
// list, by hand, of which rows each kind of answer reads, the reader
// records them: a Snapshot made by Recording notes a Key for every index
// read it does, and Touched gives the Keys of every index entry a change
// set wrote or removed. Derived data built from a recording view is still
// valid after a change set that touched none of its keys.
//
// Both sides come from memdb's indexers, the code that finds the rows: a
// read's key is the index key (or prefix) it asked for; a written row
// touches its key in every index of its table, and each prefix of it that
// ends at a separator. So a new kind of read, or a new index, is tracked
// with nothing else to change.

// A Key names one index of one table and a key or key prefix in it. Keys
// are hashes: two different ones may collide, which can only make derived
// data look stale when it is not.
type Key uint64

// Reads collects what reads through a recording view consulted.
type Reads struct {
	keys []Key
}

// Keys returns the keys recorded so far, sorted, without duplicates.
func (r *Reads) Keys() []Key {
	slices.Sort(r.keys)
	r.keys = slices.Compact(r.keys)
	return r.keys
}

// Recording returns a view of s that records in r a Key for every index
// read it does (every method but Serial, Changed and History, which read
// no row). Serial is left out on purpose: every change moves it, so a
// reader that depends on it depends on everything, and must handle it
// itself (the DNS wire cache patches the serial into its answers).
func (s *Snapshot) Recording(r *Reads) *Snapshot {
	v := *s
	v.rec = r
	return &v
}

// Touched returns the keys of the index entries that cs wrote or removed,
// sorted, without duplicates: a read recorded with none of them finds the
// same rows before and after cs.
//
// A Change lists the rows written; each kind of row adds the rows the
// registry derives from it (Row.derived).
// A serial jump (a change set without changes) touches the floors of
// the reverse zones\' stamps (reverse.go).
func (s *Snapshot) Touched(cs ChangeSet) []Key {
	var keys []Key
	for _, c := range cs.Changes {
		keys = s.rowKeys(keys, c.Row.table(), c.Row)
		if c.Old != nil {
			keys = s.rowKeys(keys, c.Old.table(), c.Old)
		}
		after := c.Row
		if c.Delete {
			after = nil
		}
		keys = c.Row.derived(&s.reader, keys, c.Old, after)
	}
	if len(cs.Changes) == 0 {
		keys = s.floorKeys(keys)
	}
	slices.Sort(keys)
	return slices.Compact(keys)
}

// rowKeys appends the keys that writing or removing row in table touches:
// for each index of the table, each key the row has there and each prefix
// of it that ends at a separator (see prefixKey).
func (s *reader) rowKeys(keys []Key, table string, row any) []Key {
	for name, idx := range s.schema.Tables[table].Indexes {
		var vals [][]byte
		switch ix := idx.Indexer.(type) {
		case memdb.SingleIndexer:
			ok, val, err := ix.FromObject(row)
			if err != nil || !ok {
				continue
			}
			vals = [][]byte{val}
		case memdb.MultiIndexer:
			ok, vs, err := ix.FromObject(row)
			if err != nil || !ok {
				continue
			}
			vals = vs
		}
		for _, val := range vals {
			keys = append(keys, hashKey(table, name, nil))
			for i, c := range val {
				if isSeparator(c) {
					keys = append(keys, hashKey(table, name, val[:i+1]))
				}
			}
		}
	}
	return keys
}

// note records the read of index in table with args, if s is recording.
// Every read memdb does is a prefix scan of the index (an exact key is a
// prefix of the keys memdb stores in a non-unique index, which end in the
// row's ID), so the key recorded is a prefix: the one asked for, cut after
// its last separator, which every row it can find touches.
func (s *reader) note(table, index string, args []any) {
	if s.rec == nil {
		return
	}
	name, prefix := strings.CutSuffix(index, "_prefix")
	idx := s.schema.Tables[table].Indexes[name]
	var val []byte
	var err error
	if prefix {
		val, err = idx.Indexer.(memdb.PrefixIndexer).PrefixFromArgs(args...)
	} else {
		val, err = idx.Indexer.FromArgs(args...)
	}
	if err != nil {
		val = nil // memdb fails the read the same way: no row, whatever the change
	}
	s.rec.keys = append(s.rec.keys, prefixKey(table, name, val))
}

// prefixKey is the key of a read of the prefix val: val up to and
// including its last separator.
func prefixKey(table, index string, val []byte) Key {
	end := 0
	for i, c := range val {
		if isSeparator(c) {
			end = i + 1
		}
	}
	return hashKey(table, index, val[:end])
}

// isSeparator reports whether c ends a part of an index key that reads
// ask for as a prefix: a field of a compound key ("tcp\x00echo\x00"), a
// label of a reversed host name ("lab.www."), the whole key. Any byte
// would be sound (a read's prefix is cut back to the last separator, so
// the worst a missing one does is make a read depend on more); these make
// the prefixes the Snapshot's methods ask for exact.
func isSeparator(c byte) bool { return c == 0 || c == '.' }

// hashKey is FNV-1a over the table, the index and the key.
func hashKey(table, index string, val []byte) Key {
	const offset, prime = 14695981039346656037, 1099511628211
	h := uint64(offset)
	for i := 0; i < len(table); i++ {
		h = (h ^ uint64(table[i])) * prime
	}
	h = (h ^ 0xff) * prime // never a byte of a name: ends the table
	for i := 0; i < len(index); i++ {
		h = (h ^ uint64(index[i])) * prime
	}
	h = (h ^ 0xff) * prime
	for _, c := range val {
		h = (h ^ uint64(c)) * prime
	}
	return Key(h)
}
