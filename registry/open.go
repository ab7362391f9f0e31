package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"os"
	"path/filepath"
	"runtime/debug"
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

	// Recover accepts a damaged journal: Open then starts with every intact
	// record, keeps each damaged segment aside as FILE.damaged, logs what
	// each damaged stretch held, and moves the serial past every serial the
	// lost records could have used (see Open). Without it, Open refuses to
	// start on damage that no crash explains.
	Recover bool

	plainSync bool // tests: no io_uring even where there is one

	// writeAt, for tests, writes buf at off in a journal segment and
	// makes it durable, instead of the system calls: a disk that fills up
	// or fails. An error of the sync must be a *syncError.
	writeAt func(f *os.File, buf []byte, off int64) error
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
// A journal that ends in a record cut short, which is what a crash while
// writing leaves, is cut there: the record, never acknowledged, is logged
// at warning level and kept beside the segment as FILE.damaged, and the
// serial moves past any serial it could have used. Any other damage — a
// record that fails its checksum or does not chain with intact records
// after it, a segment missing, emptied, or with a damaged header — makes
// Open refuse to start with an error wrapping ErrDamaged that names each
// file, offset and what would be lost, and leaves the directory as it is;
// with Options.Recover it starts with every intact record, before and
// after the damage, logs every stretch dropped at error level, keeps the
// damaged segments aside, and moves the serial past every serial the lost
// records could have used, clearing the history: a secondary then finds
// its serial older and no IXFR from it, and transfers the recovered zone
// whole. A damaged checkpoint is an error, Recover or not: Open refuses
// to start rather than start without it.
func Open(dir string, opts Options) (*Registry, error) {
	if err := os.MkdirAll(dir, 0o700); err != nil {
		return nil, fmt.Errorf("registry: create data directory: %w", err)
	}
	lock, err := lockDir(dir)
	if err != nil {
		return nil, err
	}
	r := newRegistry(opts)
	j := &journal{dir: dir, log: r.log, r: r, segMax: opts.SegmentSize, lock: lock, started: time.Now(), writeAt: opts.writeAt}
	j.cond = sync.NewCond(&j.mu)
	j.stop = make(chan struct{})
	if j.segMax <= 0 {
		j.segMax = 64 << 20
	}
	if !opts.plainSync {
		if j.ring, err = newURing(); err != nil {
			r.log.Info("journal: writing and syncing in blocking system calls", "reason", err)
		}
	}
	if err := j.restore(opts); err != nil {
		if j.ring != nil {
			j.ring.close()
		}
		lock.Close()
		return nil, err
	}
	r.j = j
	// The replay made garbage several times the size of what it loaded
	// (decoded records, radix paths copied by each batch's commit), and the
	// runtime keeps freed memory up to its next heap goal, twice the live
	// heap: give it back now, once, rather than hold it for as long as the
	// server runs. 1M instances: RSS 1,007 → 667 MiB for 575 MiB live, for
	// one collection at start. Below 10,000 instances it is a few MB, not
	// worth a collection per Open.
	if r.Snapshot().NumInstances() >= 10000 {
		debug.FreeOSMemory()
	}
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
func (j *journal) restore(opts Options) error {
	start := time.Now()
	r := j.r
	os.Remove(filepath.Join(j.dir, "checkpoint.tmp")) // an interrupted checkpoint
	// Restore commits every restoreBatch rows: nothing is published until
	// the end, and smaller transactions keep the Tx's record of the rows
	// it wrote (see Tx.base) small. The type and host counts stay pending
	// across batches and are written once, at the end: a batch in ID order
	// touches about as many types as it has rows.
	tx := newTx(r.db, r.Catalog)
	defer func() { tx.txn.Abort() }()
	tx.onReplay = func() {
		if tx.replayed++; tx.replayed%restoreBatch == 0 {
			tx.txn.Commit()
			tx.begin(r.db)
		}
	}

	serial, first := opts.Serial, uint64(1)
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
	if !haveCheckpoint && len(segs) > 0 {
		j.log.Warn("no checkpoint: the registry is rebuilt from the journal alone, from its first record's serial", "dir", j.dir)
	}

	// Without a checkpoint, the first record sets the base serial.
	p := &replay{r: r, tx: tx, serial: serial, chained: haveCheckpoint}
	damaged := map[string][]byte{} // the content of segments with damage
	next, end := first, int64(0)
	if haveCheckpoint && len(segs) == 0 {
		// Segment first was created, durably, before the checkpoint named it.
		p.missing(j.dir, first, first)
	}
	for _, seg := range segs {
		if seg > next {
			p.missing(j.dir, next, seg-1)
		}
		path := filepath.Join(j.dir, segmentName(seg))
		data, err := os.ReadFile(path)
		if err != nil {
			return fmt.Errorf("registry: %w", err)
		}
		n := len(p.damages)
		if end = p.segment(path, data); len(p.damages) > n {
			damaged[path] = data
		}
		next = seg + 1
	}
	cur := next - 1 // the segment appended to
	if len(segs) == 0 {
		cur = first
	}

	torn := p.torn(filepath.Join(j.dir, segmentName(cur)), haveCheckpoint && cur == first)
	recovering := len(p.damages) > 0 && !torn
	if recovering && !opts.Recover {
		return p.refusal()
	}
	final := p.serial
	if recovering {
		final = nextSerial(p.serial, p.lossJump(j.segMax))
		if p.hasReserved && !SerialLess(p.reserved, final) {
			final = nextSerial(p.reserved, 1)
		}
		r.remember(ChangeSet{Prev: p.serial, Serial: final}) // no history reaches across the loss
	}

	if err := tx.flushTypes(); err != nil {
		return err
	}
	if err := tx.txn.Insert(tableZone, &zoneState{ID: zoneRow, Serial: final}); err != nil {
		return fmt.Errorf("registry: restore serial: %w", err)
	}
	// A checkpoint written before reverse zones had serials has no floor
	// stamps: they begin at the serial restored. Records lost may have
	// changed any reverse zone: every one moves past them too.
	if err := raiseFloors(tx.txn, final, !recovering); err != nil {
		return err
	}
	tx.txn.Commit()
	r.instances = tx.added // the Tx began on an empty registry

	var dropped int64
	if torn {
		d := p.damages[0]
		dropped = j.dropTail(d.file, damaged[d.file], d.offset, d.reason)
		end = d.offset
	}
	if recovering {
		if cur, err = j.recoverLoss(p, damaged, next); err != nil {
			return err
		}
		end = int64(len(journalMagic))
	}

	// The next frame goes where the last whole one ends, over the zeros
	// written ahead or the damage dropped.
	f, err := os.OpenFile(filepath.Join(j.dir, segmentName(cur)), os.O_WRONLY, 0o600)
	if errors.Is(err, os.ErrNotExist) {
		f, _, err = j.createSegment(cur)
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
	r.publish(r.newSnapshot())
	if recovering || !haveCheckpoint && len(segs) == 0 {
		// A new directory records its initial serial, which the first
		// journal record will chain from; a recovered one, what it
		// recovered, so that the damage is read no more.
		if _, err := writeCheckpoint(j.dir, r.Snapshot(), r.used.live(time.Now().Unix()), cur); err != nil {
			f.Close()
			return err
		}
		if recovering {
			removeSegmentsBefore(j.dir, cur, j.log)
			j.log.Warn("serial moved past every serial the lost records could have used: secondaries will transfer the recovered zone whole",
				"from", p.serial, "to", final)
		}
	}

	// What was cut off may have been served (a record damaged in place is
	// indistinguishable from a torn one), and so may serials reserved
	// while the disk was full: move past them, so that no secondary holds
	// a serial with other content.
	target := final
	if dropped > 0 {
		target = nextSerial(final, uint32(min(dropped/minFrame+1, 1<<31-1)))
	}
	if !recovering && p.hasReserved && !SerialLess(p.reserved, target) {
		target = nextSerial(p.reserved, 1)
		j.log.Warn("the journal was full or failing when annuaire stopped: health changes served from memory were not written",
			"serials_reserved_up_to", p.reserved)
	}
	if target != final {
		if err := j.jumpSerial(target); err != nil {
			f.Close()
			return err
		}
	}
	if p.records > 0 || haveCheckpoint || len(p.damages) > 0 {
		j.log.Info("registry restored", "dir", j.dir, "serial", r.Snapshot().Serial(), "instances", r.Snapshot().NumInstances(),
			"journal_records", p.records, "duration", time.Since(start).Round(time.Millisecond))
	}
	return nil
}

// torn reports whether the damage read is what a crash leaves: one stretch
// at the end of the last segment, path, with no record after it. A crash
// can only tear the write in progress, at the end; intact records after
// damage prove it is not the end. The header of the segment a checkpoint
// names is never torn: it was written whole before the checkpoint.
//
// A record damaged in place as the journal's last is indistinguishable
// from a torn one, as it is for PostgreSQL's WAL and etcd's.
func (p *replay) torn(path string, named bool) bool {
	if len(p.damages) != 1 {
		return false
	}
	d := p.damages[0]
	return !d.resumed && !d.missing && d.file == path && !(named && d.offset < int64(len(journalMagic)))
}

// lossJump is how far the serial moves after an accepted loss: past every
// serial the lost records could have used. Lost records between intact
// ones used serials below the last intact one; those after the last one
// each took at least minFrame bytes, and a file that is gone at most a
// segment.
func (p *replay) lossJump(segMax int64) uint32 {
	var bytes int64
	for _, d := range p.damages {
		if !d.resumed {
			bytes += d.bytes
			if d.gone {
				bytes += segMax
			}
		}
	}
	return uint32(min(bytes/minFrame+1, 1<<31-1))
}

// recoverLoss accepts the damage read: it logs what each stretch held,
// keeps the damaged segments aside, and starts segment next, which the
// checkpoint restore writes will name, so that the damage is never read
// again. Nothing is removed before the checkpoint is on disk: a crash in
// between finds the damage again.
func (j *journal) recoverLoss(p *replay, damaged map[string][]byte, next uint64) (uint64, error) {
	for _, d := range p.damages {
		j.log.Error("journal damaged: dropped what it held, recovered every intact record around it",
			"file", d.file, "offset", d.offset, "bytes", d.bytes, "reason", d.reason, "lost", d.lost(),
			"intact_after", p.records-d.before)
		for _, u := range d.unused {
			j.log.Error("dropped a whole record that does not chain", "file", d.file, "record", u)
		}
	}
	for _, path := range slices.Sorted(maps.Keys(damaged)) {
		kept, err := keepAside(path, damaged[path])
		if err != nil {
			return 0, err
		}
		j.log.Warn("damaged journal segment kept aside", "file", path, "kept_in", kept)
	}
	f, _, err := j.createSegment(next)
	if err != nil {
		return 0, err
	}
	return next, f.Close()
}

// jumpSerial writes and publishes a change set without changes that moves
// the serial to s.
func (j *journal) jumpSerial(s uint32) error {
	r := j.r
	txn := r.db.Txn(true)
	cs := ChangeSet{Prev: (&reader{txn: txn}).Serial(), Serial: s}
	if err := txn.Insert(tableZone, &zoneState{ID: zoneRow, Serial: s}); err != nil {
		txn.Abort()
		return fmt.Errorf("registry: %w", err)
	}
	// The lost records may have changed any reverse zone too.
	if err := raiseFloors(txn, s, false); err != nil {
		txn.Abort()
		return err
	}
	txn.Commit()
	r.remember(cs)
	rec, err := encodeChangeSet(cs)
	if err != nil {
		return err
	}
	t := j.append(rec, r.newSnapshot(), false)
	j.log.Warn("serial moved past every serial that may have been served before", "from", cs.Prev, "to", s)
	return j.wait(t)
}

// dropTail saves a segment's bytes from end on aside, cuts the segment
// there and logs what went: a record a crash cut short, never acknowledged.
// It returns the bytes dropped; the zeros written ahead of frames are not
// counted, nor kept.
func (j *journal) dropTail(path string, data []byte, end int64, reason string) int64 {
	tail := data[end:max(end, dataEnd(data))]
	if len(tail) > 0 {
		kept, err := keepAside(path, tail)
		if err != nil {
			j.log.Error("cannot keep the dropped bytes aside", "err", err)
		}
		j.log.Warn("journal ends in a record cut short by a crash (never acknowledged): dropped it",
			"file", path, "offset", end, "bytes", len(tail), "reason", reason, "kept_in", kept)
	}
	if err := os.Truncate(path, end); err != nil {
		j.log.Error("cannot cut the damaged segment", "file", path, "err", err)
	}
	if end < int64(len(journalMagic)) {
		os.Remove(path) // restore creates it again, whole
	}
	return int64(len(tail))
}

// loadCheckpoint reads a whole checkpoint into tx and the history. Any
// damage is an error: a checkpoint is written whole and renamed into place,
// so damage means the disk, not a crash.
func (r *Registry) loadCheckpoint(tx *Tx, f io.Reader, size int64) (checkpointRecord, error) {
	var hdr checkpointRecord
	var ninst, nhosts, nstamps, nsets, nused, frames int
	now := time.Now().Unix()
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
			if err := (Change{Row: inst}).check(); err != nil {
				return err
			}
			if err := tx.replay(Change{Row: inst}); err != nil {
				return err
			}
		}
		for _, h := range rec.Hosts {
			if h == nil {
				return errors.New("null host")
			}
			if err := (Change{Row: h}).check(); err != nil {
				return err
			}
			if err := tx.replay(Change{Row: h}); err != nil {
				return err
			}
		}
		for _, st := range rec.Stamps {
			if st == nil || !st.Net.IsValid() || st.Net != st.Net.Masked() {
				return fmt.Errorf("bad stamp %v", st)
			}
			if err := tx.txn.Insert(tableStamps, st); err != nil {
				return err
			}
		}
		r.used.add(now, rec.Used...)
		nused += len(rec.Used)
		ninst += len(rec.Instances)
		nhosts += len(rec.Hosts)
		nstamps += len(rec.Stamps)
		if rec.Set != nil {
			for _, c := range rec.Set.Changes {
				if err := c.check(); err != nil {
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
	if ninst != hdr.NInst || nhosts != hdr.NHosts || nstamps != hdr.NStamps || nsets != hdr.NSets || nused != hdr.NUsed {
		return hdr, fmt.Errorf("holds %d instances, %d hosts, %d stamps, %d change sets, %d marks; its header says %d, %d, %d, %d, %d",
			ninst, nhosts, nstamps, nsets, nused, hdr.NInst, hdr.NHosts, hdr.NStamps, hdr.NSets, hdr.NUsed)
	}
	if hdr.Segment == 0 {
		return hdr, errors.New("header names no journal segment")
	}
	return hdr, nil
}
