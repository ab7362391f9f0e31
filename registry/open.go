package registry

import (
	"bytes"
	"context"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"sync"
	"time"
)

// Options configure Open. The zero value works.
type Options struct {
	// Logger receives recovery reports and checkpoint lines; nil means
	// slog.Default().
	Logger *slog.Logger

	// Serial is the zone serial of a new, empty registry; 0 means the
	// current Unix time. A restored registry keeps its own.
	Serial uint32

	// HistorySize is how many change sets History keeps; 0 means
	// DefaultHistorySize, a negative value none.
	HistorySize int

	// HistoryChanges bounds the rows over all kept change sets, so that one
	// bulk update cannot pin a million rows; 0 means DefaultHistoryChanges.
	HistoryChanges int

	// SegmentSize is how many journal bytes are written before a
	// checkpoint is taken and a new segment begun; 0 means 64 MiB.
	SegmentSize int64

	plainSync bool // tests: no io_uring even where there is one
}

// minFrame is the smallest frame a change set can take: the header and
// {"prev":0,"serial":1}. Dropped bytes / minFrame bounds the serials lost.
const minFrame = frameHeader + 21

// restoreBatch is how many rows Open restores per memdb transaction.
const restoreBatch = 1000

// Open opens, or creates with mode 0700, the data directory dir, locks it
// (see LockOwner), restores the registry from its checkpoint and journal,
// and returns a registry whose every Update is durable before it returns.
//
// A journal damaged or cut short is recovered up to its last whole record;
// what was dropped (file, offset, bytes, records) is logged at error level
// and kept beside it as FILE.damaged, and the serial jumps past every
// serial the lost records could have used. A damaged checkpoint is an
// error: Open refuses to start rather than start without it.
func Open(dir string, opts Options) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("registry: create data directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	r := newRegistry(opts)
	j := &journal{dir: dir, log: r.log, r: r, segMax: opts.SegmentSize, lock: lock, started: time.Now()}
	j.cond = sync.NewCond(&j.mu)
	if j.segMax <= 0 {
		j.segMax = 64 << 20
	}
	if !opts.plainSync {
		if j.ring, err = newURing(); err != nil {
			r.log.Info("journal: writing and syncing in blocking system calls", "reason", err)
		}
	}
	if err := j.restore(opts.Serial); err != nil {
		if j.ring != nil {
			j.ring.close()
		}
		lock.Close()
		return nil, err
	}
	r.j = j
	return r, nil
}

func listSegments(dir string) ([]uint64, error) {
	ents, err := os.ReadDir(dir)
	if err != nil {
		return nil, fmt.Errorf("registry: read data directory: %w", err)
	}
	var segs []uint64
	for _, e := range ents {
		hex, ok := strings.CutPrefix(e.Name(), "journal.")
		if !ok || len(hex) != 16 {
			continue
		}
		if n, err := strconv.ParseUint(hex, 16, 64); err == nil {
			segs = append(segs, n)
		}
	}
	slices.Sort(segs)
	return segs, nil
}

// restore loads the checkpoint, replays the segments after it and leaves
// the journal open for appends.
func (j *journal) restore(initial uint32) error {
	start := time.Now()
	r := j.r
	os.Remove(filepath.Join(j.dir, "checkpoint.tmp")) // an interrupted checkpoint
	// Restore commits every restoreBatch rows: nothing is published until
	// the end, and smaller transactions keep the Tx's record of the rows
	// it wrote (see Tx.base) small. The type and host counts stay pending
	// across batches and are written once, at the end: a batch in ID order
	// touches about as many types as it has rows.
	tx := newTx(r.db)
	defer func() { tx.txn.Abort() }()
	tx.onReplay = func() {
		if tx.replayed++; tx.replayed%restoreBatch == 0 {
			tx.txn.Commit()
			tx.begin(r.db)
		}
	}

	serial, first := initial, uint64(1)
	if serial == 0 {
		serial = uint32(time.Now().Unix())
	}
	cpPath := filepath.Join(j.dir, "checkpoint")
	cp, err := os.Open(cpPath)
	haveCheckpoint := err == nil
	switch {
	case haveCheckpoint:
		defer cp.Close()
		st, err := cp.Stat()
		if err != nil {
			return fmt.Errorf("registry: %w", err)
		}
		hdr, err := r.loadCheckpoint(tx, cp, st.Size())
		if err != nil {
			return fmt.Errorf("registry: checkpoint %s is damaged (%w); refusing to start rather than lose the registry: "+
				"restore it from a backup, or move it aside to start from the journal segments alone", cpPath, err)
		}
		serial, first = hdr.Serial, hdr.Segment
	case !errors.Is(err, os.ErrNotExist):
		return fmt.Errorf("registry: %w", err)
	}

	segs, err := listSegments(j.dir)
	if err != nil {
		return err
	}
	for len(segs) > 0 && segs[0] < first { // the checkpoint covers them: a crash came before their removal
		os.Remove(filepath.Join(j.dir, segmentName(segs[0])))
		segs = segs[1:]
	}
	if len(segs) > 0 && segs[0] != first {
		return fmt.Errorf("registry: journal segment %s is missing (the first one found is %s); refusing to start with a gap in the history",
			filepath.Join(j.dir, segmentName(first)), segmentName(segs[0]))
	}
	for i := 1; i < len(segs); i++ {
		if segs[i] != segs[i-1]+1 {
			return fmt.Errorf("registry: journal segment %s is missing; refusing to start with a gap in the history",
				filepath.Join(j.dir, segmentName(segs[i-1]+1)))
		}
	}

	if !haveCheckpoint && len(segs) > 0 {
		j.log.Warn("no checkpoint: the registry is rebuilt from the journal alone, from its first record's serial", "dir", j.dir)
	}
	chained := haveCheckpoint // without a checkpoint, the first record sets the base serial
	var records int
	var dropped, end int64
	cur := first
	for i, seg := range segs {
		path := filepath.Join(j.dir, segmentName(seg))
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("registry: %w", err)
		}
		var damage *damageError
		end, damage = scanFrames(data, journalMagic, func(off int64, payload []byte) error {
			if err := r.replayRecord(tx, payload, &serial, !chained); err != nil {
				return err
			}
			chained = true
			records++
			return nil
		})
		cur = seg
		if damage = cleanEnd(data, end, damage); damage == nil {
			continue
		}
		// Everything from here on is dropped: the rest of this segment and
		// every later one, each kept aside as FILE.damaged.
		dropped += j.dropTail(path, data, end, damage)
		for _, later := range segs[i+1:] {
			dropped += j.dropSegment(filepath.Join(j.dir, segmentName(later)))
		}
		break
	}

	if err := tx.flushTypes(); err != nil {
		return err
	}
	if err := tx.txn.Insert(tableZone, &zoneState{ID: zoneRow, Serial: serial}); err != nil {
		return fmt.Errorf("registry: restore serial: %w", err)
	}
	tx.txn.Commit()

	// The next frame goes where the last whole one ends, over the zeros
	// written ahead or the damage dropped.
	f, err := os.OpenFile(filepath.Join(j.dir, segmentName(cur)), os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		f, _, err = createSegment(j.ring, j.dir, cur)
		end = int64(len(journalMagic))
	}
	if err != nil {
		return fmt.Errorf("registry: open journal: %w", err)
	}
	st, err := f.Stat()
	if err != nil {
		f.Close()
		return fmt.Errorf("registry: %w", err)
	}
	j.f, j.seg, j.size, j.zeroed = f, cur, end, st.Size()
	j.r.publish(r.newSnapshot())
	if !haveCheckpoint && len(segs) == 0 {
		// A new directory: record the initial serial, which the first
		// journal record will chain from.
		if _, err := writeCheckpoint(j.dir, r.Snapshot(), cur); err != nil {
			f.Close()
			return err
		}
	}

	if dropped > 0 {
		// The lost records may have been served: jump past every serial
		// they could have used (RFC 1982 allows up to 2^31-1 at once) so
		// that no secondary holds a serial with other content.
		jump := uint32(min(dropped/minFrame+1, 1<<31-1))
		if err := j.jumpSerial(nextSerial(serial, jump)); err != nil {
			f.Close()
			return err
		}
	}
	if records > 0 || haveCheckpoint || dropped > 0 {
		n := 0
		for range r.Snapshot().All() {
			n++
		}
		j.log.Info("registry restored", "dir", j.dir, "serial", r.Snapshot().Serial(), "instances", n,
			"journal_records", records, "duration", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// jumpSerial writes and publishes a change set without changes that moves
// the serial to s.
func (j *journal) jumpSerial(s uint32) error {
	r := j.r
	txn := r.db.Txn(true)
	cs := ChangeSet{Prev: (&Snapshot{txn: txn}).Serial(), Serial: s}
	if err := txn.Insert(tableZone, &zoneState{ID: zoneRow, Serial: s}); err != nil {
		txn.Abort()
		return fmt.Errorf("registry: %w", err)
	}
	txn.Commit()
	r.remember(cs)
	rec, err := encodeChangeSet(cs)
	if err != nil {
		return err
	}
	seq := j.append(rec, r.newSnapshot())
	j.log.Warn("serial moved past every serial the dropped records could have used", "from", cs.Prev, "to", s)
	return j.wait(seq)
}

// cleanEnd tells what stopped the reading of a segment at end once the
// zeros written ahead of frames (see writeSync) are set aside: nothing when
// only zeros follow the last whole frame, which is how every segment ends;
// a torn frame when what is not zero ends inside the frame it starts, which
// is what a crash while writing that frame leaves.
func cleanEnd(data []byte, end int64, damage *damageError) *damageError {
	if damage == nil || end < int64(len(journalMagic)) {
		return damage
	}
	if !slices.ContainsFunc(data[end:], func(b byte) bool { return b != 0 }) {
		return nil
	}
	rest := trimZeros(data[end:])
	// A header cut short, or a length that fits the file with all that is
	// not zero within it.
	torn := len(rest) < frameHeader
	if !torn && !damage.Torn {
		n := frameHeader + int64(binary.LittleEndian.Uint32(rest[0:4]))
		torn = end+n <= int64(len(data)) && int64(len(rest)) <= n
	}
	if !torn {
		return damage
	}
	return &damageError{Offset: damage.Offset, Reason: damage.Reason + ", then zeros: cut short by a crash", Torn: true}
}

// trimZeros cuts the zeros written ahead of frames off the end of b: a
// run of at least a frame header's length of them, which no frame holds
// (a length's high bytes and a CRC make at most seven, and payloads are
// JSON). A shorter run may be a frame's own and stays.
func trimZeros(b []byte) []byte {
	if t := bytes.TrimRight(b, "\x00"); len(b)-len(t) >= frameHeader {
		return t
	}
	return b
}

// dropTail saves a segment's bytes from end on as PATH.damaged, cuts the
// segment there and logs what went. It returns the bytes dropped; the zeros
// written ahead of frames are not counted, nor kept.
func (j *journal) dropTail(path string, data []byte, end int64, damage *damageError) int64 {
	tail := data[end:]
	if end >= int64(len(journalMagic)) {
		tail = trimZeros(tail)
	}
	var intact int
	if end == 0 { // the file header itself: count what follows it
		intact = countFrames(tail[min(len(tail), len(journalMagic)):])
	} else if len(tail) >= frameHeader {
		// Step over the damaged frame if its length is believable.
		if n := int64(frameHeader) + int64(binary.LittleEndian.Uint32(tail[0:4])); n <= int64(len(tail)) {
			intact = countFrames(tail[n:])
		}
	}
	level, what := slog.LevelError, "journal damaged: recovered every record before the damage, dropped the rest"
	if damage.Torn && intact == 0 {
		level, what = slog.LevelWarn, "journal ends in a record cut short by a crash (never acknowledged): dropped it"
	}
	if len(tail) > 0 {
		if err := os.WriteFile(path+".damaged", tail, 0o600); err != nil {
			j.log.Error("cannot keep the dropped bytes aside", "err", err)
		}
		j.log.Log(context.Background(), level, what, "file", path, "offset", end, "bytes", len(tail),
			"records", fmt.Sprintf("1 damaged + %d intact after it", intact), "reason", damage.Reason, "kept_in", path+".damaged")
	}
	if err := os.Truncate(path, end); err != nil {
		j.log.Error("cannot cut the damaged segment", "file", path, "err", err)
	}
	if end < int64(len(journalMagic)) {
		os.Remove(path) // restore creates it again, whole
	}
	return int64(len(tail))
}

// dropSegment sets aside a whole segment that follows damage.
func (j *journal) dropSegment(path string) int64 {
	data, err := os.ReadFile(path)
	if err != nil {
		j.log.Error("cannot read segment after damage", "file", path, "err", err)
	}
	records := 0
	if len(data) >= len(journalMagic) {
		records = countFrames(data[len(journalMagic):])
	}
	j.log.Error("journal segment follows damage: dropped it whole", "file", path, "offset", 0, "bytes", len(data), "records", records, "kept_in", path+".damaged")
	if err := os.Rename(path, path+".damaged"); err != nil {
		j.log.Error("cannot set the segment aside", "err", err)
		os.Remove(path)
	}
	return int64(len(data))
}

// replayRecord applies one journal record to tx and the history. The
// record must follow *serial, unless first, when it sets the base.
func (r *Registry) replayRecord(tx *Tx, payload []byte, serial *uint32, first bool) error {
	if first {
		var head ChangeSet
		if json.Unmarshal(payload, &head) == nil {
			*serial = head.Prev
		}
	}
	cs, err := decodeChangeSet(payload, *serial)
	if err != nil {
		return err
	}
	for _, c := range cs.Changes {
		if err := tx.replay(c); err != nil {
			return err
		}
	}
	*serial = cs.Serial
	r.remember(cs)
	return nil
}

// decodeChangeSet decodes and checks one journal record, which must follow
// serial.
func decodeChangeSet(payload []byte, serial uint32) (ChangeSet, error) {
	var cs ChangeSet
	if err := json.Unmarshal(payload, &cs); err != nil {
		return cs, fmt.Errorf("undecodable record: %v", err)
	}
	if cs.Prev != serial {
		return cs, fmt.Errorf("record takes serial %d to %d but the registry is at %d", cs.Prev, cs.Serial, serial)
	}
	if cs.Serial == cs.Prev {
		return cs, fmt.Errorf("record does not move the serial from %d", cs.Prev)
	}
	for i, c := range cs.Changes {
		if err := checkChange(c); err != nil {
			return cs, fmt.Errorf("change %d of serial %d: %v", i, cs.Serial, err)
		}
	}
	return cs, nil
}

// checkChange validates a decoded change as a registration would be: a
// record with a good checksum but bad content is damage too.
func checkChange(c Change) error {
	if (c.Instance == nil) == (c.Host == nil) {
		return errors.New("change names neither or both an instance and a host")
	}
	for _, inst := range []*Instance{c.Instance, c.OldInstance} {
		if inst != nil {
			if err := fillInstance(inst); err != nil {
				return err
			}
		}
	}
	for _, h := range []*Host{c.Host, c.OldHost} {
		if h != nil {
			if err := fillHost(h); err != nil {
				return err
			}
		}
	}
	return nil
}

// replay applies one journaled row as it was written. Derived rows (the
// types table) follow; host collection does not run, since the journal
// holds its deletes. Deleting a row that is not there is a no-op.
func (tx *Tx) replay(c Change) error {
	if tx.onReplay != nil {
		tx.onReplay()
	}
	switch {
	case c.Instance != nil:
		if old, ok := tx.Instance(c.Instance.ID); ok {
			if err := tx.removeInstance(old); err != nil {
				return err
			}
		}
		if c.Delete {
			return nil
		}
		return tx.insertInstance(c.Instance)
	case c.Delete:
		if old, ok := tx.Host(c.Host.Name); ok {
			if err := tx.txn.Delete(tableHosts, old); err != nil {
				return fmt.Errorf("delete host %s: %w", c.Host.Name, err)
			}
		}
		return nil
	default:
		if err := tx.txn.Insert(tableHosts, c.Host); err != nil {
			return fmt.Errorf("insert host %s: %w", c.Host.Name, err)
		}
		return nil
	}
}

// loadCheckpoint reads a whole checkpoint into tx and the history. Any
// damage is an error: a checkpoint is written whole and renamed into place,
// so damage means the disk, not a crash.
func (r *Registry) loadCheckpoint(tx *Tx, f io.Reader, size int64) (checkpointRecord, error) {
	var hdr checkpointRecord
	var ninst, nhosts, nsets, frames int
	_, damage := readFrames(f, size, checkpointMagic, func(off int64, payload []byte) error {
		var rec checkpointRecord
		if err := json.Unmarshal(payload, &rec); err != nil {
			return fmt.Errorf("undecodable record: %v", err)
		}
		frames++
		if frames == 1 {
			if rec.Version != 1 {
				return fmt.Errorf("header has version %d, want 1", rec.Version)
			}
			hdr = rec
			return nil
		}
		for _, inst := range rec.Instances {
			if inst == nil {
				return errors.New("null instance")
			}
			if err := checkChange(Change{Instance: inst}); err != nil {
				return err
			}
			if err := tx.replay(Change{Instance: inst}); err != nil {
				return err
			}
		}
		for _, h := range rec.Hosts {
			if h == nil {
				return errors.New("null host")
			}
			if err := checkChange(Change{Host: h}); err != nil {
				return err
			}
			if err := tx.replay(Change{Host: h}); err != nil {
				return err
			}
		}
		ninst += len(rec.Instances)
		nhosts += len(rec.Hosts)
		if rec.Set != nil {
			for _, c := range rec.Set.Changes {
				if err := checkChange(c); err != nil {
					return err
				}
			}
			r.remember(*rec.Set)
			nsets++
		}
		return nil
	})
	if damage != nil {
		return hdr, damage
	}
	if frames == 0 {
		return hdr, errors.New("no header")
	}
	if ninst != hdr.NInst || nhosts != hdr.NHosts || nsets != hdr.NSets {
		return hdr, fmt.Errorf("holds %d instances, %d hosts, %d change sets; its header says %d, %d, %d",
			ninst, nhosts, nsets, hdr.NInst, hdr.NHosts, hdr.NSets)
	}
	if hdr.Segment == 0 {
		return hdr, errors.New("header names no journal segment")
	}
	return hdr, nil
}
