package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"sync"
	"syscall"
	"time"

	"github.com/annuaire/annuaire/internal/atomicfile"
)

// journal is the registry's write-ahead log: one frame per change set in
// segment files DIR/journal.<seq>, and from time to time a checkpoint,
// DIR/checkpoint, holding the whole registry as of the start of a segment,
// after which older segments are removed. Restart cost is therefore one
// checkpoint plus at most about one segment of change sets.
//
// Group commit: a writer appends its frame to buf under the registry's
// writeMu (so the journal's order is memdb's commit order), releases it,
// then waits for its frame to be durable. The first waiter to find no
// write in progress becomes the leader: it takes every frame buffered so
// far, writes and fdatasyncs them with one call each, publishes the
// snapshot of the last one and wakes the others. Writers that arrive during
// an fsync are carried by the next one.
//
// Durability precedes visibility: memdb commits at once (so the next writer
// reads what the previous one wrote), but Registry.Snapshot returns only
// snapshots whose frames are fsynced. Nothing a DNS or HTTP client could
// have seen is lost in a crash, and no serial is ever served twice with
// different content.
//
// When a write fails, the journal cuts off what it may have left (zeros
// over it, the file its length again, fdatasync), so that no restart finds
// a record whose writer was told it failed, and the registry goes back to
// what was last published: every update not yet durable fails, and
// changes nothing. Then it depends on the failure:
//
//   - A write refused for lack of space (ENOSPC, EDQUOT) wrote nothing the
//     kernel will later lose, and is retried: the journal is full. Every
//     update that is not only health tries the write again before it
//     runs, and a goroutine tries every second, so writes resume by
//     themselves once there is space.
//   - A failed fdatasync is never retried: the kernel may have dropped the
//     pages it could not write, and a second fsync could report success
//     for data that is gone (PostgreSQL's "fsyncgate", 2018). The journal
//     is failed: every update but health fails until a restart, which
//     recovers from what the disk really holds. The cut-off is its last
//     write; only what that fsync covers is believed.
//
// Either way health is served from memory: a check's result must reach DNS
// whatever the disk can do, or a dead instance keeps getting traffic. An
// update that only changes health (see healthOnly) is then published at
// once without a frame: it bumps the serial and enters the history like
// any other, so that secondaries follow it by IXFR. Those serials were
// served but are not in the journal, so before serving any, the journal
// reserves them: the cut-off writes a reservation record (Prev = Serial =
// the serial published, Reserve = that serial + reserveSpan) in front of
// its zeros, over space the file already holds. A restart that finds the
// reservation unreleased moves the serial past it, and no serial is served
// twice with different content. When writes resume, the change sets served
// from memory are written from the history, then a record that releases
// the reservation; when the history no longer reaches back to them, a
// checkpoint of the registry is written instead, in a new segment.
type journal struct {
	dir     string
	log     *slog.Logger
	r       *Registry
	segMax  int64
	lock    *os.File
	ring    *uring                                        // nil: write and fdatasync in the leader's own system calls
	writeAt func(f *os.File, buf []byte, off int64) error // tests: see Options.writeAt
	wg      sync.WaitGroup                                // the checkpoint and retry goroutines
	stop    chan struct{}                                 // closed by close: stops the retry goroutine
	started time.Time

	mu      sync.Mutex // guards the fields below
	cond    *sync.Cond // on mu: broadcast when syncing or a ticket changes
	f       *os.File   // the segment being appended to
	seg     uint64     // its sequence number
	size    int64      // bytes in f
	buf     []byte     // frames appended but not yet written
	waiting []*ticket  // their tickets
	last    *Snapshot  // the snapshot as of the last frame in buf
	tail    *ticket    // the last ticket handed out

	// zeroed is the file's length: past size it holds zeros written ahead
	// (see writeSync), so that appending a frame does not grow the file.
	zeroed int64

	syncing bool  // a leader is writing
	err     error // set once an fdatasync failed: the journal is failed
	full    error // set while writes fail for lack of space

	// While full or failed, health changes are served from memory (see
	// above): from memFrom, the serial the journal holds, up to horizon,
	// the last serial reserved (if reserved: the reservation is on disk).
	memFrom, horizon uint32
	reserved         bool

	retrying      bool // the retry goroutine runs
	healthRetries int  // health changes dropped by a failed write, not yet retried (see Registry.update)
	checkpointing bool
	seq           uint64        // frames appended
	synced        uint64        // frames durable
	syncs         uint64        // fsyncs done
	written       uint64        // frame bytes made durable
	syncTime      time.Duration // spent in write and fsync
}

// A ticket is a writer's frame in the journal: done once it is durable,
// with err nil, or dropped because a write failed.
type ticket struct {
	done   bool
	err    error
	health bool // the change only sets health: when dropped, it is retried from memory
}

// reserveSpan is how many serials a journal that cannot write reserves
// for the health changes it serves from memory; reservationRoom is the
// room its record takes, which writeSync keeps ahead of every frame.
const (
	reserveSpan     = 1 << 20
	reservationRoom = 128
)

// ErrFull is wrapped by the errors of updates refused because the
// journal's disk is full. They changed nothing; writes resume by
// themselves once there is space, and health changes are served from
// memory meanwhile.
var ErrFull = errors.New("journal full")

// A syncError is an error of fdatasync, which is never retried (see
// journal), as opposed to an error of the write before it.
type syncError struct{ err error }

func (e *syncError) Error() string { return "fdatasync: " + e.err.Error() }
func (e *syncError) Unwrap() error { return e.err }

// outOfSpace reports whether err is a write refused for lack of space,
// which leaves nothing behind that the kernel could lose later.
func outOfSpace(err error) bool {
	var s *syncError
	return !errors.As(err, &s) && (errors.Is(err, syscall.ENOSPC) || errors.Is(err, syscall.EDQUOT))
}

// JournalStats are a journal's counters since the registry was opened.
// Records per sync is what group commit achieves; SyncTime per sync is the
// disk's latency as writers see it.
type JournalStats struct {
	Records  uint64        // change sets made durable
	Syncs    uint64        // fdatasync calls
	Bytes    uint64        // bytes of frames written
	SyncTime time.Duration // spent writing and syncing
}

// SyncBlocks reports whether making an Update durable holds a thread in a
// blocking system call for as long as the disk takes: true where io_uring
// is missing or forbidden, false with it, and for a registry made by New.
func (r *Registry) SyncBlocks() bool { return r.j != nil && r.j.ring == nil }

// JournalStats returns the journal's counters, and false for a registry
// made by New, which has none.
func (r *Registry) JournalStats() (JournalStats, bool) {
	j := r.j
	if j == nil {
		return JournalStats{}, false
	}
	j.mu.Lock()
	defer j.mu.Unlock()
	return JournalStats{Records: j.synced, Syncs: j.syncs, Bytes: j.written, SyncTime: j.syncTime}, true
}

// JournalError returns what the journal's writes meet now: nil when they
// succeed, an error wrapping ErrFull while its disk is full, the error of
// a failed fdatasync after one. Health changes are served from memory
// meanwhile (see Update).
func (r *Registry) JournalError() error {
	if r.j == nil {
		return nil
	}
	r.j.mu.Lock()
	defer r.j.mu.Unlock()
	if r.j.err != nil {
		return r.j.err
	}
	return r.j.full
}

func segmentName(seq uint64) string { return fmt.Sprintf("journal.%016x", seq) }

func encodeChangeSet(cs ChangeSet) ([]byte, error) { return encodeRecord(journalRecord{ChangeSet: cs}) }

func encodeRecord(rec journalRecord) ([]byte, error) {
	cs := rec.ChangeSet
	b, err := json.Marshal(rec)
	if err != nil {
		return nil, fmt.Errorf("registry: encode change set %d: %w", cs.Serial, err)
	}
	if len(b) > maxFramePayload {
		return nil, fmt.Errorf("registry: change set %d is %d bytes, more than the journal's %d: split the update", cs.Serial, len(b), maxFramePayload)
	}
	return b, nil
}

// reservation encodes a reservation record at serial s of serials up to
// upto; upto == s releases the one before.
func reservation(s, upto uint32) []byte {
	b, _ := json.Marshal(journalRecord{ChangeSet: ChangeSet{Prev: s, Serial: s}, Reserve: &upto})
	return b
}

// append buffers a frame; the caller holds r.writeMu. It returns the
// frame's ticket, for wait.
func (j *journal) append(payload []byte, snap *Snapshot, health bool) *ticket {
	j.mu.Lock()
	defer j.mu.Unlock()
	t := &ticket{health: health}
	j.buf = appendFrame(j.buf, payload)
	j.waiting = append(j.waiting, t)
	if snap != nil { // nil: a record that changes nothing readers see (marks)
		j.last = snap
	}
	j.tail = t
	j.seq++
	return t
}

// lastTicket returns the ticket of the last frame buffered, nil if none.
func (j *journal) lastTicket() *ticket {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.tail
}

// writable tells, with r.writeMu held, whether an update may be written:
// nil, or the error of a failed journal, or ErrFull's while writes fail
// for lack of space. Either way, health changes are served from memory.
func (j *journal) writable() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	if j.err != nil {
		return j.err
	}
	return j.full
}

// wait returns once t's frame is durable, leading the write itself if no
// one else is, or has been dropped because a write failed.
func (j *journal) wait(t *ticket) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for !t.done {
		if j.syncing {
			j.cond.Wait()
			continue
		}
		j.lead()
	}
	return t.err
}

// lead writes every frame buffered; called with mu held and no write in
// progress, it returns with mu held.
func (j *journal) lead() {
	j.syncing = true
	buf, waiting, snap, f, size, zeroed := j.buf, j.waiting, j.last, j.f, j.size, j.zeroed
	j.buf, j.waiting, j.last = nil, nil, nil
	j.mu.Unlock()
	start := time.Now()
	grown, err := j.writeSync(f, buf, size, zeroed)
	took := time.Since(start)
	j.mu.Lock()
	j.syncs++
	j.syncTime += took
	if err != nil {
		j.writeFailed(f, size, int64(len(buf)), zeroed, waiting, err)
	} else {
		j.size += int64(len(buf))
		j.zeroed = grown
		j.written += uint64(len(buf))
		j.synced += uint64(len(waiting))
		for _, t := range waiting {
			t.done = true
		}
		if snap != nil {
			j.r.publish(snap)
		}
		if j.size >= j.segMax && !j.checkpointing && snap != nil {
			j.rotate(snap)
		}
	}
	j.syncing = false
	j.cond.Broadcast()
}

// writeFailed handles the failure of the leader's write of n bytes at off
// (see journal): called with mu held and syncing set, it takes writeMu to
// roll the registry back, so that no writer commits meanwhile.
func (j *journal) writeFailed(f *os.File, off, n, zeroed int64, waiting []*ticket, err error) {
	j.mu.Unlock()
	j.r.writeMu.Lock()
	defer j.r.writeMu.Unlock()
	j.mu.Lock()
	waiting = append(waiting, j.waiting...) // appended during the write
	j.buf, j.waiting, j.last = nil, nil, nil
	j.r.rollback()
	serial := j.r.snap.Load().Serial()

	var werr error
	if outOfSpace(err) {
		werr = fmt.Errorf("registry: %w: %w (writes resume by themselves once there is space; health changes are served from memory meanwhile)", ErrFull, err)
		j.full = werr
		j.log.Error("journal full: refusing updates until there is space, serving health changes from memory", "file", f.Name(), "err", err)
	} else {
		werr = fmt.Errorf("registry: journal %s: %w (no further writes are accepted: restart to recover from what is on disk; health changes are served from memory meanwhile)", f.Name(), err)
		j.err = werr
		j.log.Error("journal write failed; refusing further writes, serving health changes from memory", "file", f.Name(), "err", err)
	}
	for _, t := range waiting {
		t.done, t.err = true, werr
		if t.health {
			j.healthRetries++
		}
	}
	j.cond.Broadcast()

	j.tail = nil // every ticket is resolved: a no-change update waits for none
	j.memFrom, j.horizon = serial, nextSerial(serial, reserveSpan)
	j.mu.Unlock()
	reserved, cerr := j.cutOff(f, off, n, zeroed, reservation(serial, j.horizon))
	j.mu.Lock()
	j.reserved = reserved
	switch {
	case cerr != nil:
		if j.err == nil {
			j.err = fmt.Errorf("registry: journal %s: %w (no further writes are accepted: restart to recover from what is on disk; health changes are served from memory meanwhile)", f.Name(), cerr)
		}
		j.full = nil
		j.log.Error("cannot cut off a failed write: a restart may find updates that were refused, and reuse serials served from memory", "file", f.Name(), "err", cerr)
	case !reserved:
		j.log.Error("no room to reserve serials for health changes served from memory: if annuaire stops before writes resume, a restart may serve their serials again with other content", "file", f.Name())
	}
	if j.full != nil && !j.retrying {
		j.retrying = true
		j.wg.Add(1)
		go j.retry()
	}
}

// cutOff undoes a write of n bytes at off that failed: what it may have
// left over the zeros becomes zeros again and the file its length again
// (zeroed), so that no restart finds a record whose writer was told it
// failed; in front goes rec, the reservation, if there is room for it in
// the space the file holds. It reports whether rec was written. Only the
// fdatasync of its own write is believed.
func (j *journal) cutOff(f *os.File, off, n, zeroed int64, rec []byte) (bool, error) {
	var frame []byte
	if rec != nil {
		frame = appendFrame(nil, rec)
	}
	room := rec != nil && int64(len(frame)) <= zeroed-off
	buf := make([]byte, max(0, min(off+n, zeroed)-off))
	if room {
		if len(buf) < len(frame) {
			buf = make([]byte, len(frame))
		}
		copy(buf, frame)
	}
	if st, err := f.Stat(); err != nil {
		return false, err
	} else if st.Size() > zeroed {
		if err := f.Truncate(zeroed); err != nil {
			return false, err
		}
	}
	if err := j.put(f, buf, off); err != nil {
		return false, err
	}
	if room {
		j.mu.Lock()
		j.size = off + int64(len(frame))
		j.mu.Unlock()
	}
	return room, nil
}

// retry tries every second to write what the registry served from memory
// while the disk was full, until it succeeds or the journal closes.
func (j *journal) retry() {
	defer j.wg.Done()
	defer func() {
		j.mu.Lock()
		j.retrying = false
		j.mu.Unlock()
	}()
	tick := time.NewTicker(time.Second)
	defer tick.Stop()
	for {
		select {
		case <-j.stop:
			return
		case <-tick.C:
		}
		j.r.writeMu.Lock()
		err := j.resume()
		j.r.writeMu.Unlock()
		if !errors.Is(err, ErrFull) {
			return
		}
	}
}

// resume, with r.writeMu held, brings the journal level with what the
// registry published while it was full: the change sets served from
// memory, from the history, then a record releasing the reservation, in
// one write; or, when the history does not reach back to them, a
// checkpoint in a new segment. It returns nil once the journal is
// writable again, ErrFull's error while it is still full, the journal's
// error if it failed.
func (j *journal) resume() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	// Only full, never before: a leader whose write fails must take
	// writeMu, which this caller holds. While full the only write in
	// progress is the end of the one that failed, which needs it no more.
	if j.err != nil || j.full == nil {
		return j.err
	}
	for j.syncing {
		j.cond.Wait()
	}
	if j.err != nil || j.full == nil {
		return j.err
	}
	if j.healthRetries > 0 {
		return j.full // health changes dropped by the failed write go first, from memory
	}
	snap := j.r.snap.Load()
	sets, ok := snap.History(j.memFrom)
	var buf []byte
	for _, cs := range sets {
		rec, err := encodeChangeSet(cs)
		if err != nil {
			ok = false
			break
		}
		buf = appendFrame(buf, rec)
	}
	if !ok {
		return j.resumeWithCheckpoint(snap)
	}
	buf = appendFrame(buf, reservation(snap.Serial(), snap.Serial()))
	j.syncing = true
	f, size, zeroed := j.f, j.size, j.zeroed
	j.mu.Unlock()
	start := time.Now()
	grown, err := j.writeSync(f, buf, size, zeroed)
	took := time.Since(start)
	if err != nil {
		// Keep the reservation: cut off only what this write may have left.
		if _, cerr := j.cutOff(f, size, int64(len(buf)), zeroed, nil); cerr != nil && err == nil {
			err = cerr
		}
	}
	j.mu.Lock()
	j.syncing = false
	j.cond.Broadcast()
	j.syncs++
	j.syncTime += took
	if err != nil {
		return j.stillFull(f, err)
	}
	j.size += int64(len(buf))
	j.zeroed = grown
	j.written += uint64(len(buf))
	j.synced += uint64(len(sets))
	j.resumed(len(sets))
	return nil
}

// stillFull, with mu held, records that a write to bring the journal
// level failed: still full, or failed for good. It returns the error.
func (j *journal) stillFull(f *os.File, err error) error {
	if outOfSpace(err) {
		j.full = fmt.Errorf("registry: %w: %w (writes resume by themselves once there is space; health changes are served from memory meanwhile)", ErrFull, err)
		return j.full
	}
	j.err = fmt.Errorf("registry: journal %s: %w (no further writes are accepted: restart to recover from what is on disk; health changes are served from memory meanwhile)", f.Name(), err)
	j.full = nil
	j.log.Error("journal write failed; refusing further writes, serving health changes from memory", "file", f.Name(), "err", err)
	return j.err
}

// resumed, with mu held, returns the journal to writes once it holds
// everything published.
func (j *journal) resumed(sets int) {
	j.full, j.memFrom, j.horizon, j.reserved = nil, 0, 0, false
	j.log.Info("journal writable again: updates accepted", "health_changes_written", sets)
}

// resumeWithCheckpoint is resume's way when the history no longer holds
// every change set served from memory: a new segment and a checkpoint of
// snap naming it, as rotate does, then the segments before it go. Called
// with mu held; it returns with mu held.
func (j *journal) resumeWithCheckpoint(snap *Snapshot) error {
	if j.checkpointing {
		return j.full // one from before the disk filled: try again later
	}
	j.syncing = true
	seg := j.seg + 1
	j.mu.Unlock()
	f, zeroed, err := j.createSegment(seg)
	if err == nil {
		if _, err = writeCheckpoint(j.dir, snap, j.r.used.live(time.Now().Unix()), seg); err != nil {
			f.Close()
			os.Remove(f.Name())
		}
	}
	j.mu.Lock()
	j.syncing = false
	j.cond.Broadcast()
	if err != nil {
		if outOfSpace(err) {
			return j.full
		}
		return j.stillFull(j.f, err)
	}
	old := j.f
	j.f, j.seg, j.size, j.zeroed = f, seg, int64(len(journalMagic)), zeroed
	old.Close()
	removeSegmentsBefore(j.dir, seg, j.log)
	j.resumed(0)
	return nil
}

// healthRetried, with r.writeMu held, says that a health change dropped by
// a failed write is being retried: resume waits for those, so that they
// find the journal full and are served from memory, rather than fail
// again on a disk that filled again.
func (j *journal) healthRetried() {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.healthRetries--
}

// serveFromMemory, with r.writeMu held, tells whether the journal cannot
// write, so that a health change taking the serial to s is to be published
// without a frame (see journal); full is set when it cannot and the
// serials reserved are used up.
func (j *journal) serveFromMemory(s uint32) (memory bool, full error) {
	j.mu.Lock()
	defer j.mu.Unlock()
	err := j.err
	if err == nil {
		err = j.full
	}
	switch {
	case err == nil:
		return false, nil
	case SerialLess(j.horizon, s):
		return false, fmt.Errorf("%w (and the %d serials reserved for health changes served from memory are used up)", err, reserveSpan)
	}
	return true, nil
}

// zeroChunk is how far ahead of its frames a segment is filled with zeros.
const zeroChunk = 256 << 10

// writeSync writes buf at offset off of f and makes it durable. zeroed is
// f's length, zeros from off on; writeSync returns it as it leaves it. An
// error of the fdatasync is a *syncError.
//
// A frame overwrites zeros written ahead rather than growing the file, so
// the fdatasync after it has only data to flush. On ext4 one that also has
// a new file size to record commits the filesystem's journal too: about
// 40% more CPU and latency per write on this project's benchmark machine.
// PostgreSQL zero-fills its WAL segments for the same reason. Only the
// write that reaches past zeroed less reservationRoom grows the file, by
// whole chunks of zeros, once per zeroChunk bytes of frames: there is
// always room left for a reservation (see journal) in space the file
// holds, which a full disk does not refuse. Readers take the zeros after
// the last frame for the end of the journal (see replay.segment).
func (j *journal) writeSync(f *os.File, buf []byte, off, zeroed int64) (int64, error) {
	end := off + int64(len(buf))
	if end+reservationRoom > zeroed {
		grown := ((end+reservationRoom)/zeroChunk + 1) * zeroChunk
		buf = append(buf, make([]byte, grown-end)...)
		zeroed = grown
	}
	return zeroed, j.put(f, buf, off)
}

// put writes buf at off in f and fdatasyncs it (the data and the file's
// size, not its times). An error of the fdatasync is a *syncError.
func (j *journal) put(f *os.File, buf []byte, off int64) error {
	if j.writeAt != nil {
		return j.writeAt(f, buf, off)
	}
	if j.ring != nil {
		return j.ring.writeSync(f, buf, off)
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		return err
	}
	if err := fdatasync(f); err != nil {
		return &syncError{err}
	}
	return nil
}

// rotate starts a new segment and writes, in the background, a checkpoint
// of snap, which is the state at the end of the old one. Called with mu
// held after a successful sync; a failure only delays the checkpoint.
func (j *journal) rotate(snap *Snapshot) {
	f, zeroed, err := j.createSegment(j.seg + 1)
	if err != nil {
		j.log.Error("cannot start a new journal segment; the current one keeps growing", "err", err)
		return
	}
	old := j.f
	j.f, j.seg, j.size, j.zeroed = f, j.seg+1, int64(len(journalMagic)), zeroed
	if err := old.Close(); err != nil {
		j.log.Warn("close journal segment", "file", old.Name(), "err", err)
	}
	j.checkpointing = true
	j.wg.Add(1)
	go func(seg uint64) {
		defer j.wg.Done()
		start := time.Now()
		n, err := writeCheckpoint(j.dir, snap, j.r.used.live(time.Now().Unix()), seg)
		if err != nil {
			j.log.Error("checkpoint failed; the journal segments stay", "err", err)
		} else {
			removeSegmentsBefore(j.dir, seg, j.log)
			j.log.Info("checkpoint written", "serial", snap.Serial(), "bytes", n, "duration", time.Since(start).Round(time.Millisecond))
		}
		j.mu.Lock()
		j.checkpointing = false
		j.mu.Unlock()
	}(j.seg)
}

// createSegment creates an empty segment durably: its magic, zeros ahead
// of the first frame, and its name in the directory. It returns the file's
// length.
func (j *journal) createSegment(seq uint64) (*os.File, int64, error) {
	path := filepath.Join(j.dir, segmentName(seq))
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return nil, 0, fmt.Errorf("registry: create %s: %w", path, err)
	}
	zeroed, err := j.writeSync(f, []byte(journalMagic), 0, 0)
	if err == nil {
		err = syncDir(j.dir)
	}
	if err != nil {
		f.Close()
		os.Remove(path) // a segment cut short would be read as torn; none is clearer
		return nil, 0, fmt.Errorf("registry: create %s: %w", path, err)
	}
	return f, zeroed, nil
}

func syncDir(dir string) error {
	if err := atomicfile.SyncDir(dir); err != nil {
		return fmt.Errorf("registry: fsync directory %s: %w", dir, err)
	}
	return nil
}

func removeSegmentsBefore(dir string, seg uint64, log *slog.Logger) {
	segs, err := listSegments(dir)
	if err != nil {
		log.Warn("list journal segments", "err", err)
		return
	}
	for _, s := range segs {
		if s < seg {
			if err := os.Remove(filepath.Join(dir, segmentName(s))); err != nil {
				log.Warn("remove journal segment", "err", err)
			}
		}
	}
}

// A checkpointRecord is one frame of a checkpoint: first a header with
// the counts, then rows in chunks, then the history, one change set a frame.
type checkpointRecord struct {
	Version   int         `json:"version,omitempty"`
	Serial    uint32      `json:"serial,omitempty"`
	Segment   uint64      `json:"segment,omitempty"` // the first journal segment after this checkpoint
	NInst     int         `json:"n_instances,omitempty"`
	NHosts    int         `json:"n_hosts,omitempty"`
	NSets     int         `json:"n_sets,omitempty"`
	Instances []*Instance `json:"instances,omitempty"`
	Hosts     []*Host     `json:"hosts,omitempty"`
	NStamps   int         `json:"n_stamps,omitempty"`
	Stamps    []*Stamp    `json:"stamps,omitempty"` // reverse.go; absent from checkpoints written before them
	Set       *ChangeSet  `json:"set,omitempty"`
	NUsed     int         `json:"n_used,omitempty"`
	Used      []Mark      `json:"used,omitempty"` // once.go; absent from checkpoints written before marks
}

const checkpointChunk = 1024

// writeCheckpoint writes snap to DIR/checkpoint through a temporary file,
// fsync and rename, so that the checkpoint is always whole or absent. It
// returns the checkpoint's size.
func writeCheckpoint(dir string, snap *Snapshot, used []Mark, seg uint64) (int64, error) {
	tmp := filepath.Join(dir, "checkpoint.tmp")
	f, err := os.OpenFile(tmp, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
	if err != nil {
		return 0, fmt.Errorf("registry: create %s: %w", tmp, err)
	}
	defer os.Remove(tmp) // after a successful rename, a no-op
	defer f.Close()
	w := &frameWriter{f: f, buf: []byte(checkpointMagic)}

	var insts []*Instance
	for inst := range snap.All() {
		insts = append(insts, inst)
	}
	var hosts []*Host
	for h := range snap.Hosts() {
		hosts = append(hosts, h)
	}
	var stamps []*Stamp
	for st := range rows[Stamp](&snap.reader, tableStamps, indexID+"_prefix", netip.Prefix{}) {
		stamps = append(stamps, st)
	}
	w.put(checkpointRecord{Version: 1, Serial: snap.Serial(), Segment: seg, NInst: len(insts), NHosts: len(hosts),
		NStamps: len(stamps), NSets: len(snap.hist), NUsed: len(used)})
	for i := 0; i < len(insts); i += checkpointChunk {
		w.put(checkpointRecord{Instances: insts[i:min(i+checkpointChunk, len(insts))]})
	}
	for i := 0; i < len(hosts); i += checkpointChunk {
		w.put(checkpointRecord{Hosts: hosts[i:min(i+checkpointChunk, len(hosts))]})
	}
	for i := 0; i < len(stamps); i += checkpointChunk {
		w.put(checkpointRecord{Stamps: stamps[i:min(i+checkpointChunk, len(stamps))]})
	}
	for i := range snap.hist {
		w.put(checkpointRecord{Set: &snap.hist[i]})
	}
	for i := 0; i < len(used); i += checkpointChunk {
		w.put(checkpointRecord{Used: used[i:min(i+checkpointChunk, len(used))]})
	}
	w.flush()
	if w.err != nil {
		return 0, fmt.Errorf("registry: write %s: %w", tmp, w.err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("registry: fsync %s: %w", tmp, err)
	}
	// Closed before the rename: Windows renames no file that is open
	// without FILE_SHARE_DELETE, which Go does not ask for.
	if err := f.Close(); err != nil {
		return 0, fmt.Errorf("registry: close %s: %w", tmp, err)
	}
	path := filepath.Join(dir, "checkpoint")
	if err := os.Rename(tmp, path); err != nil {
		return 0, fmt.Errorf("registry: %w", err)
	}
	return w.size, syncDir(dir)
}

// frameWriter buffers frames into writes of about a megabyte and keeps the
// first error.
type frameWriter struct {
	f    *os.File
	buf  []byte
	size int64
	err  error
}

func (w *frameWriter) put(rec checkpointRecord) {
	if w.err != nil {
		return
	}
	b, err := json.Marshal(rec)
	if err != nil {
		w.err = err
		return
	}
	w.buf = appendFrame(w.buf, b)
	if len(w.buf) >= 1<<20 {
		w.flush()
	}
}

func (w *frameWriter) flush() {
	if w.err != nil {
		return
	}
	n, err := w.f.Write(w.buf)
	w.size += int64(n)
	w.buf = w.buf[:0]
	w.err = err
}

// close flushes what is buffered, waits for a checkpoint in progress and
// releases the files and the lock. The caller holds no lock and has tried
// a last resume.
func (j *journal) close() error {
	var err error
	if t := j.lastTicket(); t != nil {
		err = j.wait(t)
	}
	close(j.stop)
	j.wg.Wait()
	if werr := j.writable(); werr != nil {
		err = werr
		j.mu.Lock()
		reserved := j.reserved
		j.mu.Unlock()
		if reserved {
			j.log.Warn("closing a journal that cannot write: the next start moves the serial past the health changes served from memory", "err", werr)
		} else {
			j.log.Error("closing a journal that cannot write, with no serials reserved: the next start may serve those of the health changes served from memory again", "err", werr)
		}
	}
	j.mu.Lock()
	if cerr := j.f.Close(); err == nil && cerr != nil {
		err = fmt.Errorf("registry: close %s: %w", j.f.Name(), cerr)
	}
	j.mu.Unlock()
	if j.ring != nil {
		j.ring.close()
	}
	j.lock.Close() // closing the descriptor releases the flock
	if errors.Is(err, ErrClosed) {
		err = nil
	}
	return err
}
