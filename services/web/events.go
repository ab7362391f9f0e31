package web

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"strconv"
	"time"

	"github.com/annuaire/annuaire/registry"
)

// keepAlive is how often an idle event stream sends a comment, so that
// proxies keep it open and a vanished client is noticed.
const keepAlive = 15 * time.Second

// coalesceDelay is how long the page's stream waits after a change for
// more changes before it draws them.
const coalesceDelay = 100 * time.Millisecond

// streamSendBuffer is an event stream's socket send buffer. A stream
// carries changes, a few hundred bytes each: a fixed buffer bounds the
// kernel memory of a reader that stops reading, where the kernel's
// autotuning would grow it to megabytes.
const streamSendBuffer = 64 << 10

// Bounds on what a stream's snapshot and catch-up send at once.
const (
	snapshotChunk = 500  // rows per snapshot event
	maxCatchUp    = 1000 // changes replayed after Last-Event-ID, else a snapshot
	// snapshotBytes ends a snapshot event early: a stream holds its event
	// until the reader has taken it, and a reader that never reads holds
	// it for the whole write deadline. 500 rows of 2 KB of TXT made each
	// of 2,048 streams hold 1 MB; now each holds this, or one row larger.
	snapshotBytes = 16 << 10
)

// events answers GET /api/events: the registry's rows, then its changes,
// as Server-Sent Events (WHATWG HTML section 9.2). A stream starts with
// the registry as it is, in "snapshot" events of up to 500 rows
// ({"serial":S,"changes":[ROW...],"more":true}; the last one has no
// "more" and carries the id S), then sends one "change" event per change
// set ({"prev":P,"serial":S,"changes":[ROW...]}, id S). A ROW is
// {"instance":{...}} or {"host":{...}}, with "delete":true when the row
// went: a reader keeps instances by id and hosts by name. A reader that
// reconnects with Last-Event-ID gets the change sets it missed, or a
// snapshot when the registry no longer has them. Each change set is
// encoded once for all readers.
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	s.stream(w, r, &s.changes, s.followChanges, true, func(sw *streamWriter, snap *registry.Snapshot) (uint32, bool, error) {
		if id := r.Header.Get("Last-Event-ID"); id != "" {
			have, err := strconv.ParseUint(id, 10, 32)
			if err == nil && uint32(have) == snap.Serial() {
				return snap.Serial(), true, nil
			}
			if err == nil && sw.catchUp(snap, uint32(have)) {
				return snap.Serial(), true, sw.flush()
			}
		}
		return snap.Serial(), true, sw.snapshot(snap)
	})
}

// followChanges publishes every change set of the registry after snap's
// serial, until stop is closed or the server shuts down.
func (s *Server) followChanges(snap *registry.Snapshot, stop <-chan struct{}) {
	for {
		select {
		case <-snap.Changed():
		case <-stop:
			return
		case <-s.closing:
			return
		}
		next := s.Registry.Snapshot()
		sets, ok := next.History(snap.Serial())
		if !ok {
			// The kept history does not reach back: readers start over.
			s.changes.publish(stop, &feedEvent{prev: snap.Serial(), serial: next.Serial(), reset: true})
		}
		for _, cs := range sets {
			s.changes.publish(stop, &feedEvent{prev: cs.Prev, serial: cs.Serial, final: true, data: changeEvent(cs)})
		}
		snap = next
	}
}

// streamChange is one row of a change set as a stream sends it. The
// registry's Change also carries the row as it was before, for IXFR; a
// reader that follows the stream has it already.
type streamChange struct {
	Delete   bool               `json:"delete,omitempty"`
	Instance *registry.Instance `json:"instance,omitempty"`
	Host     *registry.Host     `json:"host,omitempty"`
}

func toStream(c registry.Change) streamChange {
	sc := streamChange{Delete: c.Delete}
	switch row := c.Row.(type) {
	case *registry.Instance:
		sc.Instance = row
	case *registry.Host:
		sc.Host = row
	}
	return sc
}

// changeEvent encodes one change set as a "change" event.
func changeEvent(cs registry.ChangeSet) []byte {
	rows := make([]streamChange, len(cs.Changes))
	for i, c := range cs.Changes {
		rows[i] = toStream(c)
	}
	body, _ := json.Marshal(struct {
		Prev    uint32         `json:"prev"`
		Serial  uint32         `json:"serial"`
		Changes []streamChange `json:"changes"`
	}{cs.Prev, cs.Serial, rows})
	var b bytes.Buffer
	b.Grow(len(body) + 40)
	b.WriteString("id: ")
	b.WriteString(strconv.FormatUint(uint64(cs.Serial), 10))
	b.WriteString("\nevent: change\ndata: ")
	b.Write(body) // JSON from encoding/json has no line breaks
	b.WriteString("\n\n")
	return b.Bytes()
}

// A streamWriter writes an event stream, each write under the stream's
// write deadline, so that a reader that stops reading is dropped rather
// than holding its goroutine and buffers forever.
type streamWriter struct {
	w       http.ResponseWriter
	rc      *http.ResponseController
	timeout time.Duration
	armed   bool // a deadline is set for the writes until the next flush

	// encoders, if not nil, holds a slot while a snapshot chunk is
	// encoded; waiting for one ends when done or closing is closed.
	encoders      chan struct{}
	done, closing <-chan struct{}
}

// errStreamEnded is a stream's end while it waited to encode.
var errStreamEnded = errors.New("web: the stream ended")

// encoding takes an encoder slot (see Server.encoders).
func (sw *streamWriter) encoding() error {
	if sw.encoders == nil {
		return nil
	}
	select {
	case sw.encoders <- struct{}{}:
		return nil
	case <-sw.done:
	case <-sw.closing:
	}
	return errStreamEnded
}

func (sw *streamWriter) encoded() {
	if sw.encoders != nil {
		<-sw.encoders
	}
}

// write writes b under a deadline that it sets when none is pending:
// the writes of a batch and their flush share one.
func (sw *streamWriter) write(b []byte) error {
	if err := sw.deadline(); err != nil {
		return err
	}
	_, err := sw.w.Write(b)
	return err
}

// flush sends what was written and ends the batch.
func (sw *streamWriter) flush() error {
	if err := sw.deadline(); err != nil {
		return err
	}
	sw.armed = false
	return sw.rc.Flush()
}

func (sw *streamWriter) deadline() error {
	if sw.armed {
		return nil
	}
	sw.armed = true
	return sw.rc.SetWriteDeadline(time.Now().Add(sw.timeout))
}

// snapshot writes the registry's rows as "snapshot" events, hosts first,
// encoded a row at a time, of at most snapshotChunk rows and
// snapshotBytes (unless one row is larger): its memory grows neither with
// the registry nor with the size of its rows.
func (sw *streamWriter) snapshot(snap *registry.Snapshot) error {
	var (
		buf  bytes.Buffer
		rows int
	)
	serial := strconv.FormatUint(uint64(snap.Serial()), 10)
	// Each event is encoded holding an encoder slot, given back before
	// the event is written: writes wait for readers, encoders for CPU.
	held := false
	defer func() {
		if held {
			sw.encoded()
		}
	}()
	start := func() error {
		buf.Reset()
		buf.WriteString(`event: snapshot` + "\n" + `data: {"serial":` + serial + `,"changes":[`)
		rows = 0
		err := sw.encoding()
		held = err == nil
		return err
	}
	end := func(last bool) error {
		if last {
			buf.WriteString("]}\nid: " + serial + "\n\n")
		} else {
			buf.WriteString(`],"more":true}` + "\n\n")
		}
		sw.encoded()
		held = false
		if err := sw.write(buf.Bytes()); err != nil {
			return err
		}
		return sw.flush() // each event under a deadline of its own
	}
	add := func(c streamChange) error {
		b, err := json.Marshal(c)
		if err != nil {
			return err
		}
		if rows == snapshotChunk || rows > 0 && buf.Len()+len(b) > snapshotBytes {
			if err := end(false); err != nil {
				return err
			}
			if err := start(); err != nil {
				return err
			}
		}
		if rows > 0 {
			buf.WriteByte(',')
		}
		rows++
		buf.Write(b)
		return nil
	}
	buf.Grow(snapshotBytes + 256) // once: an event and its ends fit
	if err := start(); err != nil {
		return err
	}
	for h := range snap.Hosts() {
		if err := add(streamChange{Host: h}); err != nil {
			return err
		}
	}
	for inst := range snap.All() {
		if err := add(streamChange{Instance: inst}); err != nil {
			return err
		}
	}
	return end(true)
}

// catchUp writes the change sets from serial have to snap's, if the
// registry still has them and they are few; otherwise it writes nothing
// and returns false.
func (sw *streamWriter) catchUp(snap *registry.Snapshot, have uint32) bool {
	sets, ok := snap.History(have)
	if !ok {
		return false
	}
	n := 0
	for _, cs := range sets {
		n += len(cs.Changes)
	}
	if n > maxCatchUp {
		return false
	}
	for _, cs := range sets {
		if sw.write(changeEvent(cs)) != nil {
			return true // the stream is broken: the loop will see it
		}
	}
	return true
}

// connKey is the context key of a request's connection (see init).
type connKey struct{}

// A beginFunc writes what a new reader starts from, given the registry
// now, and returns where the reader then is: the serial, and, for the
// page, whether with its chains.
type beginFunc func(sw *streamWriter, snap *registry.Snapshot) (serial uint32, final bool, err error)

// stream answers an event stream from feed f: begin writes the reader's
// start, then every event f publishes after it is written, until the
// client goes, falls too far behind or cannot take a write within
// StreamWriteTimeout, or the server shuts down. exact says that events
// are change sets, each of which must follow the reader's serial; the
// page's are redrawn cards, which any later event may follow. Streams
// count against MaxStreams; they wake on the feed, never poll.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, f *feed, follow func(*registry.Snapshot, <-chan struct{}), exact bool, begin beginFunc) {
	addr, _ := remoteAddr(r.RemoteAddr)
	// A refusal closes its connection: kept, it would hold one of the
	// connection slots the streams' caps leave to the API and the page,
	// and a client refused for a stream would hold them all.
	if why := s.streams.take(addr); why != granted {
		status, text := http.StatusServiceUnavailable, "the server has too many event streams open"
		if why == fullClient {
			status, text = http.StatusTooManyRequests, "your address has too many event streams open"
		}
		w.Header().Set("Retry-After", "10")
		w.Header().Set("Connection", "close")
		writeError(w, status, text)
		return
	}
	defer s.streams.release(addr)

	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	sw := &streamWriter{w: w, rc: http.NewResponseController(w), timeout: orDefault(s.StreamWriteTimeout, DefaultStreamWriteTimeout),
		encoders: s.encoders, done: r.Context().Done(), closing: s.closing}
	var dropped bool // the reader fell too far behind
	if c, ok := r.Context().Value(connKey{}).(net.Conn); ok {
		if tc, ok := tcpConn(c); ok {
			tc.SetWriteBuffer(streamSendBuffer)
			// A reader dropped for falling behind is reset, as one
			// whose write timed out is (limitedConn.Write).
			defer func() {
				if dropped {
					tc.SetLinger(0)
				}
			}()
		}
	}
	if sw.flush() != nil {
		return
	}

	ev := f.join(s.Registry, follow)
	defer f.leave()
	at, final, err := begin(sw, s.Registry.Snapshot())
	if err != nil {
		return
	}
	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	pause := time.NewTimer(0)
	defer pause.Stop()
	done := r.Context().Done()
	var flushed time.Time
	for {
		select {
		case <-ev.ready:
		case <-tick.C:
			if sw.write([]byte(": keep-alive\n\n")) != nil || sw.flush() != nil {
				return
			}
			continue
		case <-done:
			return
		case <-s.closing:
			return
		}
		// A stream flushes at most once per coalesceDelay: a change on
		// its own goes at once, a burst of them in one write per reader
		// (each write is a system call, the most of what a reader costs).
		if wait := coalesceDelay - time.Since(flushed); wait > 0 {
			pause.Reset(wait)
			select {
			case <-pause.C:
			case <-done:
				return
			case <-s.closing:
				return
			}
		}
		// Write every event ready now, then flush once.
		for ready := true; ready; {
			ev = ev.next
			switch {
			case ev.reset && serialAfter(ev.serial, at):
				return
			case ev.reset:
			case f.behind(ev):
				dropped = true
				return
			case serialAfter(ev.serial, at):
				if exact && ev.prev != at {
					return // a gap: cannot happen, but a reader must not miss a change
				}
				fallthrough
			case ev.serial == at && ev.final && !final:
				if sw.write(ev.data) != nil {
					return
				}
				at, final = ev.serial, ev.final
			}
			select {
			case <-ev.ready:
			default:
				ready = false
			}
		}
		if sw.flush() != nil {
			return
		}
		flushed = time.Now()
	}
}

// withConn keeps each request's connection in its context, for stream.
func withConn(ctx context.Context, c net.Conn) context.Context {
	return context.WithValue(ctx, connKey{}, c)
}
