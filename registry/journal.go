package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"sync"
	"time"

	"golang.org/x/sys/unix"
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
// A failed write or fsync poisons the journal: the kernel may have dropped
// the dirty pages and a retried fsync could report success for data that
// is gone (PostgreSQL's "fsyncgate", 2018). Every later Update returns the
// error; the operator restarts, and recovery reads what the disk really
// holds.
type journal struct {
	dir     string
	log     *slog.Logger
	r       *Registry
	segMax  int64
	lock    *os.File
	ring    *uring         // nil: write and fdatasync in the leader's own system calls
	wg      sync.WaitGroup // the checkpoint goroutine
	started time.Time

	mu   sync.Mutex // guards the fields below
	cond *sync.Cond // on mu: broadcast when synced, syncing or err change
	f    *os.File   // the segment being appended to
	seg  uint64     // its sequence number
	size int64      // bytes in f
	buf  []byte     // frames appended but not yet written
	last *Snapshot  // the snapshot as of the last frame in buf

	// zeroed is the file's length: past size it holds zeros written ahead
	// (see writeSync), so that appending a frame does not grow the file.
	zeroed int64

	seq, synced   uint64 // frames appended, frames durable
	syncing       bool   // a leader is writing
	err           error  // set once a write or fsync failed
	checkpointing bool
	syncs         uint64        // fsyncs done
	written       uint64        // frame bytes made durable
	syncTime      time.Duration // spent in write and fsync
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

func segmentName(seq uint64) string { return fmt.Sprintf("journal.%016x", seq) }

func encodeChangeSet(cs ChangeSet) ([]byte, error) {
	b, err := json.Marshal(cs)
	if err != nil {
		return nil, fmt.Errorf("registry: encode change set %d: %w", cs.Serial, err)
	}
	if len(b) > maxFramePayload {
		return nil, fmt.Errorf("registry: change set %d is %d bytes, more than the journal's %d: split the update", cs.Serial, len(b), maxFramePayload)
	}
	return b, nil
}

// append buffers a frame; the caller holds r.writeMu. It returns the
// frame's sequence number, for wait.
func (j *journal) append(payload []byte, snap *Snapshot) uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	j.buf = appendFrame(j.buf, payload)
	j.last = snap
	j.seq++
	return j.seq
}

// appended returns the sequence number of the last frame buffered.
func (j *journal) appended() uint64 {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.seq
}

func (j *journal) failed() error {
	j.mu.Lock()
	defer j.mu.Unlock()
	return j.err
}

// wait returns once frame seq is durable, leading the write itself if no
// one else is.
func (j *journal) wait(seq uint64) error {
	j.mu.Lock()
	defer j.mu.Unlock()
	for {
		switch {
		case j.synced >= seq:
			return nil
		case j.err != nil:
			return j.err
		case j.syncing:
			j.cond.Wait()
			continue
		}
		j.syncing = true
		buf, snap, upto, f, size, zeroed := j.buf, j.last, j.seq, j.f, j.size, j.zeroed
		j.buf, j.last = nil, nil
		j.mu.Unlock()
		start := time.Now()
		zeroed, err := writeSync(j.ring, f, buf, size, zeroed)
		took := time.Since(start)
		j.mu.Lock()
		j.syncing = false
		j.syncs++
		j.syncTime += took
		if err != nil {
			j.err = fmt.Errorf("registry: journal %s: %w (no further writes are accepted: restart to recover from what is on disk)", f.Name(), err)
			j.log.Error("journal write failed; refusing further writes", "file", f.Name(), "err", err)
		} else {
			j.size += int64(len(buf))
			j.zeroed = zeroed
			j.written += uint64(len(buf))
			j.synced = upto
			if snap != nil {
				j.r.publish(snap)
			}
			if j.size >= j.segMax && !j.checkpointing && snap != nil {
				j.rotate(snap)
			}
		}
		j.cond.Broadcast()
	}
}

// zeroChunk is how far ahead of its frames a segment is filled with zeros.
const zeroChunk = 256 << 10

// writeSync writes buf at offset off of f and makes it durable. zeroed is
// f's length, zeros from off on; writeSync returns it as it leaves it.
//
// A frame overwrites zeros written ahead rather than growing the file, so
// the fdatasync after it has only data to flush. On ext4 one that also has
// a new file size to record commits the filesystem's journal too: about
// 40% more CPU and latency per write on this project's benchmark machine.
// PostgreSQL zero-fills its WAL segments for the same reason. Only the
// write that reaches past zeroed grows the file, by whole chunks of zeros,
// once per zeroChunk bytes of frames. Readers take the zeros after the
// last frame for the end of the journal (see cleanEnd).
func writeSync(u *uring, f *os.File, buf []byte, off, zeroed int64) (int64, error) {
	end := off + int64(len(buf))
	if end > zeroed {
		grown := (end/zeroChunk + 1) * zeroChunk
		buf = append(buf, make([]byte, grown-end)...)
		zeroed = grown
	}
	if u != nil {
		return zeroed, u.writeSync(f, buf, off)
	}
	if _, err := f.WriteAt(buf, off); err != nil {
		return zeroed, err
	}
	// fdatasync: the data and the file's size, not its times.
	return zeroed, unix.Fdatasync(int(f.Fd()))
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
		n, err := writeCheckpoint(j.dir, snap, seg)
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
	zeroed, err := writeSync(j.ring, f, []byte(journalMagic), 0, 0)
	if err != nil {
		f.Close()
		return nil, 0, fmt.Errorf("registry: write %s: %w", path, err)
	}
	if err := syncDir(j.dir); err != nil {
		f.Close()
		return nil, 0, err
	}
	return f, zeroed, nil
}

func syncDir(dir string) error {
	d, err := os.Open(dir)
	if err != nil {
		return fmt.Errorf("registry: open directory %s: %w", dir, err)
	}
	defer d.Close()
	if err := d.Sync(); err != nil {
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
	Set       *ChangeSet  `json:"set,omitempty"`
}

const checkpointChunk = 1024

// writeCheckpoint writes snap to DIR/checkpoint through a temporary file,
// fsync and rename, so that the checkpoint is always whole or absent. It
// returns the checkpoint's size.
func writeCheckpoint(dir string, snap *Snapshot, seg uint64) (int64, error) {
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
	w.put(checkpointRecord{Version: 1, Serial: snap.Serial(), Segment: seg, NInst: len(insts), NHosts: len(hosts), NSets: len(snap.hist)})
	for i := 0; i < len(insts); i += checkpointChunk {
		w.put(checkpointRecord{Instances: insts[i:min(i+checkpointChunk, len(insts))]})
	}
	for i := 0; i < len(hosts); i += checkpointChunk {
		w.put(checkpointRecord{Hosts: hosts[i:min(i+checkpointChunk, len(hosts))]})
	}
	for i := range snap.hist {
		w.put(checkpointRecord{Set: &snap.hist[i]})
	}
	w.flush()
	if w.err != nil {
		return 0, fmt.Errorf("registry: write %s: %w", tmp, w.err)
	}
	if err := f.Sync(); err != nil {
		return 0, fmt.Errorf("registry: fsync %s: %w", tmp, err)
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
// releases the files and the lock.
func (j *journal) close() error {
	err := j.wait(j.appended())
	j.wg.Wait()
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
