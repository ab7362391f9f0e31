package web

import (
	"sync"
	"sync/atomic"

	"github.com/annuaire/annuaire/registry"
)

// maxLagBytes bounds how far an event stream's reader may fall behind the
// events published, in their bytes and an overhead per event; past it the
// reader is closed, and its browser reconnects to a fresh snapshot. It
// also bounds what one slow reader keeps in memory.
const (
	maxLagBytes   = 8 << 20
	eventOverhead = 128
)

// A feed is one kind of event stream's events, each encoded once for all
// its readers. While it has readers, one goroutine follows the registry
// and appends events to a list; each reader walks the list at its own
// pace and writes what it finds. Nothing is encoded per reader except the
// snapshot a reader starts from.
type feed struct {
	mu      sync.Mutex
	head    *feedEvent                // guarded by mu: the newest event, nil without readers
	newest  atomic.Pointer[feedEvent] // head, for readers that only look
	readers int                       // guarded by mu
	stop    chan struct{}             // guarded by mu: closed to stop the follower
	encoded atomic.Int64              // events encoded, for tests
}

// A feedEvent is one event of a feed, encoded, and the link to the next.
// Its fields other than next are set before it is published.
type feedEvent struct {
	seq    uint64 // position in the feed
	bytes  int64  // bytes published up to and including this event
	serial uint32 // the registry serial a reader is at after this event
	prev   uint32 // the serial it follows from
	final  bool   // for the page: with the chains of serial
	reset  bool   // history was lost: readers start again from a snapshot
	data   []byte // what is written to the stream, whole events

	next  *feedEvent    // set before ready is closed
	ready chan struct{} // closed when next is set
}

// join adds a reader and returns the newest event: the reader is to
// write what follows it. start runs the follower when the feed had no
// reader; it must publish events that follow from serial on.
func (f *feed) join(reg *registry.Registry, start func(snap *registry.Snapshot, stop <-chan struct{})) *feedEvent {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readers++
	if f.head == nil {
		snap := reg.Snapshot()
		f.head = &feedEvent{serial: snap.Serial(), final: true, ready: make(chan struct{})}
		f.newest.Store(f.head)
		f.stop = make(chan struct{})
		go start(snap, f.stop)
	}
	return f.head
}

// leave removes a reader; the last one stops the follower.
func (f *feed) leave() {
	f.mu.Lock()
	defer f.mu.Unlock()
	f.readers--
	if f.readers == 0 {
		close(f.stop)
		f.head = nil
	}
}

// publish appends an event. It does nothing once the follower that calls
// it has been stopped.
func (f *feed) publish(stop <-chan struct{}, ev *feedEvent) {
	f.encoded.Add(1)
	f.mu.Lock()
	defer f.mu.Unlock()
	select {
	case <-stop:
		return
	default:
	}
	last := f.head
	ev.seq, ev.bytes = last.seq+1, last.bytes+int64(len(ev.data))+eventOverhead
	ev.ready = make(chan struct{})
	last.next = ev
	f.head = ev
	f.newest.Store(ev)
	close(last.ready)
}

// behind reports whether ev is too far behind the newest event for its
// reader to go on.
func (f *feed) behind(ev *feedEvent) bool {
	head := f.newest.Load()
	return head != nil && head.bytes-ev.bytes > maxLagBytes
}

// serialAfter reports whether serial a is after b in RFC 1982 arithmetic.
func serialAfter(a, b uint32) bool { return a != b && int32(a-b) > 0 }
