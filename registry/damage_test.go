package registry

import (
	"bytes"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// dirState is every file of a data directory but the lock, for checking
// that a refused Open changed nothing.
func dirState(t *testing.T, dir string) map[string]string {
	t.Helper()
	ents, err := os.ReadDir(dir)
	if err != nil {
		t.Fatal(err)
	}
	files := map[string]string{}
	for _, e := range ents {
		if e.Name() == "lock" {
			continue
		}
		b, err := os.ReadFile(filepath.Join(dir, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		files[e.Name()] = string(b)
	}
	return files
}

// TestJournalDamage is issue 18's damaged journals: the segment that the
// checkpoint names deleted or emptied, one byte of its header changed,
// three bytes flipped in the middle of it. Each one refuses to start,
// saying which file, where, and what would be lost, and leaves the
// directory as it found it; Recover starts with every intact record, keeps
// the damaged file aside and moves the serial past every serial served,
// so that a secondary transfers the zone whole rather than keep content
// the primary no longer has.
func TestJournalDamage(t *testing.T) {
	const n, hit = 300, 121
	src, offsets, _ := writeJournal(t, n)
	served := uint32(1 + n) // the serial of the last record
	seg := segmentName(1)

	for _, tc := range []struct {
		name   string
		damage func(path string)
		// what the refusal says, beyond the file's name
		says []string
		// instances Recover gets back, and the one it cannot
		recovered int
		lost      string
	}{
		{
			name:      "segment deleted",
			damage:    func(path string) { os.Remove(path) },
			says:      []string{"is missing", "every change after serial 1"},
			recovered: 0,
		},
		{
			name:      "segment emptied",
			damage:    func(path string) { os.Truncate(path, 0) },
			says:      []string{"offset 0", "every change after serial 1"},
			recovered: 0,
		},
		{
			name: "header byte changed",
			damage: func(path string) {
				b, _ := os.ReadFile(path)
				b[3] ^= 0x20
				os.WriteFile(path, b, 0o600)
			},
			says:      []string{"offset 0", "bad file header", fmt.Sprintf("%d intact records follow", n)},
			recovered: n,
		},
		{
			name: "three bytes flipped mid-segment",
			damage: func(path string) {
				b, _ := os.ReadFile(path)
				for i := range 3 {
					b[offsets[hit]+40+int64(i)] ^= 0xff
				}
				os.WriteFile(path, b, 0o600)
			},
			says: []string{fmt.Sprintf("offset %d", offsets[hit]), "checksum mismatch",
				fmt.Sprintf("serial %d", 1+hit+1), fmt.Sprintf("%d intact records follow", n-hit-1)},
			recovered: n - 1,
			lost:      echoInstance(hit).Service + "-tcp-" + echoInstance(hit).Host + "-" + fmt.Sprint(echoInstance(hit).Port),
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			dir := copyDir(t, src)
			path := filepath.Join(dir, seg)
			tc.damage(path)
			before := dirState(t, dir)

			_, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(tbWriter{t}, nil))})
			if err == nil || !errors.Is(err, ErrDamaged) {
				t.Fatalf("Open = %v, want an error wrapping ErrDamaged", err)
			}
			for _, want := range append([]string{path, "refusing to start"}, tc.says...) {
				if !strings.Contains(err.Error(), want) {
					t.Errorf("the refusal does not say %q:\n%v", want, err)
				}
			}
			if after := dirState(t, dir); !equalState(before, after) {
				t.Errorf("a refused Open changed the directory: %v -> %v", keys(before), keys(after))
			}

			var logs logBuffer
			r, err := Open(dir, Options{Recover: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if err != nil {
				t.Fatalf("Open with Recover: %v", err)
			}
			s := r.Snapshot()
			if got := countInstances(s); got != tc.recovered {
				t.Errorf("recovered %d instances, want %d", got, tc.recovered)
			}
			if tc.lost != "" {
				if _, ok := s.Instance(tc.lost); ok {
					t.Errorf("the damaged record's instance %s is there", tc.lost)
				}
			}
			// A secondary may hold any serial up to the last one served:
			// the recovered zone differs from what it holds, so the serial
			// must be greater, and IXFR from it must fall back to AXFR.
			if d := s.Serial() - served; s.Serial() <= served || d > 1<<31-1 {
				t.Errorf("serial %d after recovery, want past %d", s.Serial(), served)
			}
			for _, from := range []uint32{served, served - 1, 1 + hit} {
				if _, ok := s.History(from); ok {
					t.Errorf("History(%d) answers: a secondary at that serial would get a diff against content lost", from)
				}
			}
			if !strings.Contains(logs.String(), "level=ERROR") || !strings.Contains(logs.String(), path) {
				t.Errorf("recovery did not log the loss at error level:\n%s", logs.String())
			}
			if b, ok := before[seg]; ok {
				kept, err := os.ReadFile(path + ".damaged")
				if err != nil || string(kept) != b {
					t.Errorf("the damaged segment is not kept aside whole as %s.damaged: %v", seg, err)
				}
			}

			// The recovered directory opens cleanly, writes and restarts.
			id := mustRegister(t, r, echoInstance(n+1), nil)
			want := dump(r.Snapshot())
			r.Close()
			var again logBuffer
			r, err = Open(dir, Options{Logger: slog.New(slog.NewTextHandler(&again, &slog.HandlerOptions{Level: slog.LevelWarn}))})
			if err != nil {
				t.Fatalf("Open after recovery: %v", err)
			}
			defer r.Close()
			if got := dump(r.Snapshot()); got != want {
				t.Errorf("restart after recovery differs:\n got %s\nwant %s", got, want)
			}
			if _, ok := r.Snapshot().Instance(id); !ok || again.String() != "" {
				t.Errorf("restart after recovery: instance %s there: %v; logged:\n%s", id, ok, again.String())
			}
		})
	}
}

func equalState(a, b map[string]string) bool {
	if len(a) != len(b) {
		return false
	}
	for k, v := range a {
		if w, ok := b[k]; !ok || !bytes.Equal([]byte(v), []byte(w)) {
			return false
		}
	}
	return true
}

func keys(m map[string]string) []string {
	var ks []string
	for k := range m {
		ks = append(ks, fmt.Sprintf("%s(%d)", k, len(m[k])))
	}
	return ks
}

// chain returns n journal records that take the serial from 1 to n+1,
// each registering one instance.
func chain(t *testing.T, n int) [][]byte {
	var recs [][]byte
	for i := range n {
		inst := echoInstance(i)
		if err := fillInstance(&inst); err != nil {
			t.Fatal(err)
		}
		rec, err := encodeChangeSet(ChangeSet{Prev: uint32(1 + i), Serial: uint32(2 + i), Changes: []Change{{Row: &inst}}})
		if err != nil {
			t.Fatal(err)
		}
		recs = append(recs, rec)
	}
	return recs
}

// TestReplayResync reads past damage: the next record accepted must pass
// its checksum, decode, and not take the serial back. A whole record that
// does not chain (here a copy of an older one) is part of the damage.
func TestReplayResync(t *testing.T) {
	recs := chain(t, 5)
	data := []byte(journalMagic)
	data = appendFrame(data, recs[0])
	data = appendFrame(data, recs[1])
	damagedAt := int64(len(data))
	garbage := appendFrame(nil, recs[2])
	garbage[frameHeader+5] ^= 1 // fails its checksum
	data = append(data, garbage...)
	data = appendFrame(data, recs[0]) // whole, but serial 1 -> 2 again
	resumeAt := int64(len(data))
	data = appendFrame(data, recs[3])
	data = appendFrame(data, recs[4])
	end := int64(len(data))
	data = append(data, make([]byte, 4096)...)

	r := newRegistry(Options{})
	tx := newTx(r.db, r.Catalog)
	defer tx.txn.Abort()
	p := &replay{r: r, tx: tx, serial: 1, chained: true}
	if got := p.segment("j", data); got != end {
		t.Errorf("segment ends at %d, want %d", got, end)
	}
	if len(p.damages) != 1 {
		t.Fatalf("%d damages, want 1", len(p.damages))
	}
	d := p.damages[0]
	if d.offset != damagedAt || d.bytes != resumeAt-damagedAt || !d.resumed || d.lost() != "the change set of serial 4" || len(d.unused) != 1 {
		t.Errorf("damage %+v (lost %q), want at %d, %d bytes, the change set of serial 4 lost, one whole record unused",
			*d, d.lost(), damagedAt, resumeAt-damagedAt)
	}
	if p.serial != 6 || p.records != 4 || countInstances(tx) != 4 {
		t.Errorf("serial %d, %d records, %d instances; want 6, 4, 4", p.serial, p.records, countInstances(tx))
	}
}

// TestJournalDamageAcrossSegments damages one segment of several, then
// removes another: by default Open refuses; Recover keeps every record of
// every other segment, the later ones included.
func TestJournalDamageAcrossSegments(t *testing.T) {
	src := t.TempDir()
	r := mustOpen(t, src, Options{Serial: 1, SegmentSize: 4096, Logger: slog.New(slog.DiscardHandler)})
	os.Mkdir(filepath.Join(src, "checkpoint.tmp"), 0o700) // checkpoints fail: the segments stay
	const n = 200
	for i := range n {
		mustRegister(t, r, echoInstance(i), nil)
	}
	r.Close()
	segs, _ := listSegments(src)
	if len(segs) < 4 {
		t.Fatalf("%d segments, want at least 4", len(segs))
	}
	mid := filepath.Join(src, segmentName(segs[len(segs)-3]))
	b, _ := os.ReadFile(mid)
	b[len(journalMagic)+frameHeader+10] ^= 0xff // its first record
	os.WriteFile(mid, b, 0o600)
	gone := filepath.Join(src, segmentName(segs[len(segs)-2]))
	held := countFramesIn(t, gone)
	os.Remove(gone)

	_, err := Open(src, Options{Logger: slog.New(slog.DiscardHandler)})
	if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), mid+" at offset 8") || !strings.Contains(err.Error(), gone+" is missing") {
		t.Fatalf("Open = %v, want a refusal naming %s and %s", err, mid, gone)
	}
	r = mustOpen(t, src, Options{Recover: true})
	defer r.Close()
	if got, want := countInstances(r.Snapshot()), n-1-held; got != want {
		t.Errorf("%d instances recovered, want %d (all but the damaged record and the %d of the missing segment)", got, want, held)
	}
	if _, ok := r.Snapshot().Instance(fmt.Sprintf("echo-tcp-h%d-%d", n-1, 1000+n-1)); !ok {
		t.Error("the last record, in the last segment, was not recovered")
	}
}

func countFramesIn(t *testing.T, path string) int {
	data, err := os.ReadFile(path)
	if err != nil {
		t.Fatal(err)
	}
	n := 0
	scanFrames(data[:dataEnd(data)], journalMagic, func(int64, []byte) error { n++; return nil })
	return n
}
