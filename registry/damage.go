package registry

import (
	"bytes"
	"encoding/binary"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"
)

// ErrDamaged is wrapped by the error Open returns when the journal is
// damaged in a way no crash explains: a record that fails its checksum
// with intact records after it, a segment missing, emptied or with its
// header changed. Open then refuses to start and changes nothing on disk;
// Options.Recover accepts the loss.
var ErrDamaged = errors.New("journal damaged")

// A damage is a stretch of the journal that holds no usable record: from
// offset in file, bytes long, up to the next record that chains or to the
// zeros that end the segment.
type damage struct {
	file    string
	offset  int64
	bytes   int64
	reason  string
	missing bool   // the file is not there
	gone    bool   // the file is missing or empty: how much it held is unknown
	after   uint32 // the serial the journal had reached before the damage
	resumed bool   // a record was accepted after it,
	next    uint32 // whose Prev is next: the change sets after `after` up to next are lost
	before  int    // records accepted before it
	unused  []string
}

// lost says which change sets the damage took.
func (d *damage) lost() string {
	switch {
	case !d.resumed:
		return fmt.Sprintf("every change after serial %d", d.after)
	case d.next == d.after:
		return "no change set (the next record follows on)"
	case d.next == d.after+1:
		return fmt.Sprintf("the change set of serial %d", d.next)
	}
	return fmt.Sprintf("the change sets of serials %d to %d (%d)", d.after+1, d.next, d.next-d.after)
}

// A replay reads journal segments into a restore transaction. Unlike
// readFrames it does not stop at damage: it notes it, then looks for the
// next record it can use, so that what a damaged frame cannot take with it
// is kept (length and CRC framing make that possible). A record found so
// must pass its checksum (a false match is 2^-32 per position), decode as
// a valid change set, and not take the serial back: then it is a record
// the journal really holds, where the damage ended.
type replay struct {
	r       *Registry
	tx      *Tx
	serial  uint32
	chained bool // serial is a base records must follow: a checkpoint's or a record's
	records int
	damages []*damage
	open    *damage // the last damage, until a record is accepted after it

	// The last reservation record (see journal.reserve): reserved is the
	// serial below which the registry may have served change sets that
	// never reached the journal; none once a record releases it.
	reserved    uint32
	hasReserved bool
}

// A journalRecord is one frame of a journal segment: a change set, or a
// reservation, which leaves the serial where it is (Prev == Serial) and
// says that serials up to Reserve may be served before the next record is
// written; a reservation of its own serial releases the one before.
//
// Used lists the marks of single use (once.go) the update came with; a
// record with marks alone leaves the serial where it is too.
type journalRecord struct {
	ChangeSet
	Reserve *uint32 `json:"reserve,omitempty"`
	Used    []Mark  `json:"used,omitempty"`
}

// decodeRecord decodes and checks one journal record, apart from where it
// chains.
func decodeRecord(payload []byte) (journalRecord, error) {
	var rec journalRecord
	if err := json.Unmarshal(payload, &rec); err != nil {
		return rec, fmt.Errorf("undecodable record: %v", err)
	}
	if rec.Reserve != nil {
		if rec.Serial != rec.Prev || len(rec.Changes) > 0 {
			return rec, fmt.Errorf("reservation record moves the serial from %d to %d", rec.Prev, rec.Serial)
		}
		return rec, nil
	}
	if rec.Serial == rec.Prev && (len(rec.Used) == 0 || len(rec.Changes) > 0) {
		return rec, fmt.Errorf("record does not move the serial from %d", rec.Prev)
	}
	for i, c := range rec.Changes {
		if err := c.check(); err != nil {
			return rec, fmt.Errorf("change %d of serial %d: %v", i, rec.Serial, err)
		}
	}
	return rec, nil
}

// record replays one whole frame. It must follow the serial exactly, or,
// after damage, at least not take it back.
func (p *replay) record(payload []byte) error {
	rec, err := decodeRecord(payload)
	if err != nil {
		return err
	}
	if p.chained {
		if p.open == nil && rec.Prev != p.serial {
			return fmt.Errorf("record takes serial %d to %d but the journal is at %d", rec.Prev, rec.Serial, p.serial)
		}
		if p.open != nil && SerialLess(rec.Prev, p.serial) {
			return fmt.Errorf("record takes serial %d to %d, behind the %d the journal is at", rec.Prev, rec.Serial, p.serial)
		}
	}
	p.r.used.add(time.Now().Unix(), rec.Used...)
	switch {
	case rec.Reserve != nil:
		p.reserved, p.hasReserved = *rec.Reserve, *rec.Reserve != rec.Serial
	case len(rec.Changes) == 0 && rec.Serial == rec.Prev: // marks alone
	default:
		for _, c := range rec.Changes {
			if err := p.tx.replay(c); err != nil {
				return err
			}
		}
		if err := p.tx.stamp(rec.ChangeSet); err != nil {
			return err
		}
		p.r.remember(rec.ChangeSet)
	}
	if d := p.open; d != nil {
		d.resumed, d.next = true, rec.Prev
		p.open = nil
	}
	p.serial, p.chained = rec.Serial, true
	p.records++
	return nil
}

// damaged notes damage at off in file.
func (p *replay) damaged(file string, off int64, reason string) *damage {
	d := &damage{file: file, offset: off, reason: reason, after: p.serial, before: p.records}
	p.damages = append(p.damages, d)
	p.open = d
	return d
}

// missing notes segments that are not there.
func (p *replay) missing(dir string, from, to uint64) {
	what := "missing"
	if to > from {
		what = fmt.Sprintf("missing, and every segment up to %s", segmentName(to))
	}
	d := p.damaged(filepath.Join(dir, segmentName(from)), 0, what)
	d.missing, d.gone = true, true
}

// segment replays the content of one segment file and returns where its
// last accepted record ends: where the next one would be written.
func (p *replay) segment(path string, data []byte) (end int64) {
	size := int64(len(data))
	if size >= int64(len(journalMagic)) && string(data[:len(journalMagic)]) == journalMagic {
		end = int64(len(journalMagic))
	} else {
		reason := fmt.Sprintf("bad file header %q, want %q", data[:min(size, int64(len(journalMagic)))], journalMagic)
		switch {
		case size == 0:
			reason = "empty file"
		case size < int64(len(journalMagic)):
			reason = fmt.Sprintf("truncated file header (%d of %d bytes)", size, len(journalMagic))
		}
		d := p.damaged(path, 0, reason)
		d.gone = size == 0
	}
	for off := end; off < size; {
		if d := p.open; d != nil && d.file == path && !mayBeRecord(data[off:]) {
			off = nextCandidate(data, off+1)
			continue
		}
		payload, n, derr := nextFrame(data[off:])
		reason := ""
		if derr != nil {
			reason = derr.Reason
		} else {
			d := p.open
			err := p.record(payload)
			if err == nil {
				if d != nil && d.file == path {
					d.bytes = off - d.offset
				}
				off += int64(n)
				end = off
				continue
			}
			reason = err.Error()
			if d != nil && d.file == path {
				d.unused = append(d.unused, fmt.Sprintf("offset %d: %s", off, reason))
			}
		}
		if p.open == nil || p.open.file != path {
			if allZero(data[off:]) {
				break // the zeros written ahead of frames: the end
			}
			p.damaged(path, off, reason)
		}
		off = nextCandidate(data, off+1)
	}
	if d := p.open; d != nil && d.file == path {
		d.bytes = max(0, dataEnd(data)-d.offset)
	}
	return end
}

// mayBeRecord is what a frame found by looking for one must look like
// before its checksum is worth computing: a length that fits and a JSON
// object. Without it, looking through a megabyte of random bytes in a
// 64 MiB segment would checksum 32 MiB at one position in 64.
func mayBeRecord(data []byte) bool {
	if len(data) < frameHeader+2 {
		return false
	}
	n := int64(binary.LittleEndian.Uint32(data[0:4]))
	return n >= 2 && n <= int64(len(data)-frameHeader) && data[frameHeader] == '{' && data[frameHeader+n-1] == '}'
}

// nextCandidate returns where, from off on, the next frame could start:
// not deep inside a run of zeros, since a header starts with at most three
// (its length is little endian and not zero).
func nextCandidate(data []byte, off int64) int64 {
	i := off
	for i < int64(len(data)) && data[i] == 0 {
		i++
	}
	if i == int64(len(data)) {
		return i
	}
	return max(off, i-3)
}

func allZero(b []byte) bool { return !slices.ContainsFunc(b, func(c byte) bool { return c != 0 }) }

// dataEnd is where the zeros written ahead of frames start at the end of
// a segment's content: a run of at least a frame header's length of them,
// which no frame holds (a length's high bytes and a CRC make at most
// seven, and payloads are JSON). A shorter run may be a frame's own.
func dataEnd(b []byte) int64 {
	if t := bytes.TrimRight(b, "\x00"); len(b)-len(t) >= frameHeader {
		return int64(len(t))
	}
	return int64(len(b))
}

// refusal is the error Open returns for damage it does not accept.
func (p *replay) refusal() error { return &damageReport{damages: p.damages, records: p.records} }

type damageReport struct {
	damages []*damage
	records int // accepted in all
}

func (e *damageReport) Error() string {
	var b strings.Builder
	b.WriteString("registry: journal damaged, refusing to start rather than lose what it holds: ")
	for i, d := range e.damages {
		if i > 0 {
			b.WriteString("; ")
		}
		if d.missing {
			fmt.Fprintf(&b, "%s is %s", d.file, d.reason)
		} else {
			fmt.Fprintf(&b, "%s at offset %d: %s", d.file, d.offset, d.reason)
		}
		if d.bytes > 0 {
			fmt.Fprintf(&b, ", %d bytes unusable", d.bytes)
		}
		fmt.Fprintf(&b, "; lost: %s", d.lost())
		if len(d.unused) > 0 {
			fmt.Fprintf(&b, ", with %d whole records in it that do not chain", len(d.unused))
		}
		if n := e.records - d.before; n > 0 {
			fmt.Fprintf(&b, "; %d intact records follow", n)
		}
	}
	b.WriteString(". Recovering starts with every intact record and keeps the damaged files aside as FILE.damaged")
	return b.String()
}

func (e *damageReport) Unwrap() error { return ErrDamaged }

// keepAside writes data, a damaged file's content, beside it as
// PATH.damaged (or PATH.damaged.N if that is taken), durably.
func keepAside(path string, data []byte) (string, error) {
	for i := 0; ; i++ {
		name := path + ".damaged"
		if i > 0 {
			name = fmt.Sprintf("%s.%d", name, i)
		}
		f, err := os.OpenFile(name, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
		if errors.Is(err, os.ErrExist) {
			if old, rerr := os.ReadFile(name); rerr == nil && string(old) == string(data) {
				return name, nil // kept by an earlier attempt
			}
			continue
		}
		if err != nil {
			return "", fmt.Errorf("registry: keep damaged file aside: %w", err)
		}
		_, err = f.Write(data)
		if err == nil {
			err = f.Sync()
		}
		if cerr := f.Close(); err == nil {
			err = cerr
		}
		if err != nil {
			os.Remove(name)
			return "", fmt.Errorf("registry: keep damaged file aside: %w", err)
		}
		return name, syncDir(filepath.Dir(path))
	}
}
