package wire

import (
	"hash/maphash"
	"sync/atomic"
)

// A table holds the cache's entries by key. Every query reads it and few
// write it (a question new to the cache, or an answer an update made
// stale), so readers take no lock: the table is open-addressed, an entry
// carries its key, slots are only ever filled or replaced, never emptied,
// and a writer (serialised by Cache.mu) publishes each change with one
// atomic store, or a larger table with one swap of Cache.tab. A map under
// a sync.RWMutex cost two atomic read-modify-writes on one shared word per
// query, a cache line that bounces between the CPUs of the readers.
type table struct {
	seed  maphash.Seed
	slots []atomic.Pointer[entry] // a power of two, at most half full
	used  int                     // slots filled; writers only
}

// minSlots is a new table's size: the benchmark's mix takes 81.
const minSlots = 1 << 10

func newTable(slots int) *table {
	return &table{seed: maphash.MakeSeed(), slots: make([]atomic.Pointer[entry], slots)}
}

// get returns the entry of key, or nil.
func (t *table) get(key []byte) *entry {
	mask := uint64(len(t.slots) - 1)
	for i := maphash.Bytes(t.seed, key) & mask; ; i = (i + 1) & mask {
		if e := t.slots[i].Load(); e == nil || e.key == string(key) {
			return e
		}
	}
}

// put sets the entry of e.key to e and returns the one it replaces, if
// any. The table must have room: see full.
func (t *table) put(e *entry) (old *entry) {
	mask := uint64(len(t.slots) - 1)
	for i := maphash.String(t.seed, e.key) & mask; ; i = (i + 1) & mask {
		if old = t.slots[i].Load(); old == nil || old.key == e.key {
			if old == nil {
				t.used++
			}
			t.slots[i].Store(e)
			return old
		}
	}
}

// full reports whether one more key would fill more than half the slots.
func (t *table) full() bool { return 2*(t.used+1) > len(t.slots) }

// grown returns a table twice as large with t's entries.
func (t *table) grown() *table {
	nt := newTable(2 * len(t.slots))
	for i := range t.slots {
		if e := t.slots[i].Load(); e != nil {
			nt.put(e)
		}
	}
	return nt
}
