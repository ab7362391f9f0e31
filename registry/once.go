package registry

import (
	"container/heap"
	"errors"
	"fmt"
	"sync"
	"time"
)

// Marks of single use. A signed request (a TSIG-signed DNS UPDATE) can be
// sent again verbatim by anyone who captured it, for as long as its
// signature's time window lasts. The DNS server marks each signed request
// it acts on with a Tx.UseOnce; a copy finds the mark and is refused. A
// mark is journaled with the update it came with, in the same record (a
// record of its own, which moves no serial, when the update changes
// nothing), so a restart within the window does not forget it; it is
// dropped once it expires, when the request it marks would be refused
// for its age anyway. Checkpoints carry the live ones.

// ErrReplay is returned by Tx.UseOnce for an ID already used.
var ErrReplay = errors.New("registry: already used")

// maxMarks bounds the marks held at once: signed updates within one time
// window (300 s for nsupdate), so only key holders fill it. Past it,
// UseOnce refuses rather than forget a mark that has not expired.
const maxMarks = 1 << 16

// A Mark says that a request whose digest is ID was acted on, and may not
// be until Expires (Unix seconds).
type Mark struct {
	ID      string `json:"id"`
	Expires int64  `json:"expires"`
}

// marks is the set of live marks: by ID, and by expiry for dropping them.
type marks struct {
	mu   sync.Mutex // guards the fields below
	byID map[string]int64
	q    markHeap
}

// has reports whether id is marked at now, dropping the expired marks.
func (ms *marks) has(id string, now int64) bool {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.expire(now)
	_, ok := ms.byID[id]
	return ok
}

// count returns how many marks are live at now.
func (ms *marks) count(now int64) int {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.expire(now)
	return len(ms.byID)
}

// add records marks, skipping those expired at now.
func (ms *marks) add(now int64, add ...Mark) {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	if ms.byID == nil {
		ms.byID = make(map[string]int64)
	}
	for _, m := range add {
		if m.Expires <= now {
			continue
		}
		if old, ok := ms.byID[m.ID]; ok && old >= m.Expires {
			continue
		}
		ms.byID[m.ID] = m.Expires
		heap.Push(&ms.q, m) // an older entry for the ID is dropped when it expires
	}
}

// live returns the marks that have not expired at now, for a checkpoint.
func (ms *marks) live(now int64) []Mark {
	ms.mu.Lock()
	defer ms.mu.Unlock()
	ms.expire(now)
	out := make([]Mark, 0, len(ms.byID))
	for id, exp := range ms.byID {
		out = append(out, Mark{ID: id, Expires: exp})
	}
	return out
}

func (ms *marks) expire(now int64) {
	for len(ms.q) > 0 && ms.q[0].Expires <= now {
		m := heap.Pop(&ms.q).(Mark)
		if ms.byID[m.ID] == m.Expires {
			delete(ms.byID, m.ID)
		}
	}
}

type markHeap []Mark

func (h markHeap) Len() int           { return len(h) }
func (h markHeap) Less(i, j int) bool { return h[i].Expires < h[j].Expires }
func (h markHeap) Swap(i, j int)      { h[i], h[j] = h[j], h[i] }
func (h *markHeap) Push(x any)        { *h = append(*h, x.(Mark)) }
func (h *markHeap) Pop() any {
	old := *h
	m := old[len(old)-1]
	*h = old[:len(old)-1]
	return m
}

// UseOnce marks id as used until expires; it returns an error wrapping
// ErrReplay if id is marked already, by this Tx or an earlier one, even
// before a restart. The mark is written with the update, and only if the
// update is: an Update whose function fails marks nothing. An update that
// changes nothing but marks writes a record that keeps the serial.
func (tx *Tx) UseOnce(id string, expires time.Time) error {
	if tx.marks == nil {
		return errors.New("registry: UseOnce outside Update")
	}
	now := time.Now().Unix()
	for _, m := range tx.newMarks {
		if m.ID == id {
			return fmt.Errorf("%w (twice in one update)", ErrReplay)
		}
	}
	if tx.marks.has(id, now) {
		return ErrReplay
	}
	if tx.marks.count(now)+len(tx.newMarks) >= maxMarks {
		return fmt.Errorf("registry: %d signed requests marked within their time window: try again later", maxMarks)
	}
	tx.newMarks = append(tx.newMarks, Mark{ID: id, Expires: expires.Unix()})
	return nil
}
