package registry

// Defaults for Options' history bounds.
const (
	DefaultHistorySize    = 1000   // change sets
	DefaultHistoryChanges = 100000 // rows over all kept change sets
)

// A ChangeSet is what one Update wrote: the rows in the order memdb
// committed them, taking the zone from serial Prev to Serial. A change set
// with no Changes only moves the serial (after a recovery, see Open).
type ChangeSet struct {
	Prev    uint32   `json:"prev"`
	Serial  uint32   `json:"serial"`
	Changes []Change `json:"changes,omitempty"`
}

// History returns the change sets that lead from serial from to the
// current one, oldest first. ok is false when the kept history does not
// reach back to from: an IXFR must then fall back to AXFR (RFC 1995
// section 4). from equal to the current serial gives no sets and ok.
func (r *Registry) History(from uint32) (changes []ChangeSet, ok bool) {
	return r.Snapshot().History(from)
}

// History is Registry.History as of this snapshot, so that a transfer can
// send a diff and a zone that agree.
func (s *Snapshot) History(from uint32) (changes []ChangeSet, ok bool) {
	if from == s.Serial() {
		return nil, true
	}
	// Serials only grow by whole change sets, so one Prev matches at most
	// once in the window kept; search from the newest, the common case.
	for i := len(s.hist) - 1; i >= 0; i-- {
		if s.hist[i].Prev == from {
			return s.hist[i:len(s.hist):len(s.hist)], true
		}
	}
	return nil, false
}

// remember appends cs to the history and trims it to its bounds. Published
// snapshots keep their own slice headers: appending past their length and
// re-slicing the front never changes what they see. Called with writeMu.
func (r *Registry) remember(cs ChangeSet) {
	if len(cs.Changes) == 0 {
		// A serial jump after lost records: the history before it no
		// longer describes how the zone got here.
		r.hist, r.histChanges = nil, 0
		return
	}
	r.hist = append(r.hist, cs)
	r.histChanges += len(cs.Changes)
	for len(r.hist) > 0 && (len(r.hist) > r.maxSets || r.histChanges > r.maxChanges) {
		// Older snapshots may still read r.hist[0]: leave it be; the array
		// goes when append next reallocates and no snapshot holds it.
		r.histChanges -= len(r.hist[0].Changes)
		r.hist = r.hist[1:]
	}
}
