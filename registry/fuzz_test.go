package registry

import (
	"bytes"
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"slices"
	"testing"
	"testing/iotest"
)

// FuzzJournal feeds arbitrary segment files to the decoder and replay that
// Open uses: no panic, no accepted prefix beyond the data, and a registry
// whose derived rows agree with its instances.
func FuzzJournal(f *testing.F) {
	f.Add([]byte(journalMagic))
	f.Add(appendFrame([]byte(journalMagic), []byte(`{"prev":1,"serial":2,"changes":[{"host":{"name":"a","addresses":["10.0.0.1"],"ttl":5}}]}`)))
	f.Add(appendFrame([]byte(journalMagic), []byte(`{"prev":1,"serial":2,"changes":[{"delete":true,"instance":{"id":"x","name":"echo","proto":"tcp","instance":"a","host":"a","port":7}}]}`)))
	// the zeros written ahead of the next frame, and a frame torn over them
	f.Add(append(appendFrame([]byte(journalMagic), []byte(`{"prev":1,"serial":2}`)), make([]byte, 64)...))
	f.Add(append(appendFrame([]byte(journalMagic), []byte(`{"prev":1,"serial":2}`))[:20], make([]byte, 64)...))
	// damage between records that chain, and a reservation of serials
	two := appendFrame(appendFrame([]byte(journalMagic), []byte(`{"prev":1,"serial":2}`)), []byte(`{"prev":2,"serial":2,"reserve":9}`))
	f.Add(appendFrame(append(bytes.Clone(two), "\x15\x00\x00\x00garbage"...), []byte(`{"prev":3,"serial":4}`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newRegistry(Options{Logger: slog.New(slog.DiscardHandler)})
		tx := newTx(r.db, r.Catalog)
		defer tx.txn.Abort()
		p := &replay{r: r, tx: tx}
		end := p.segment("journal", data)
		if end > int64(len(data)) || len(p.damages) == 0 && !allZero(data[end:]) {
			t.Fatalf("end %d of %d bytes, no damage, but bytes other than zeros follow", end, len(data))
		}
		for _, d := range p.damages {
			if d.offset < 0 || d.bytes < 0 || d.offset+d.bytes > int64(len(data)) || d.resumed && SerialLess(d.next, d.after) {
				t.Fatalf("damage %+v in %d bytes", *d, len(data))
			}
		}
		counts := map[[2]string]int{}
		for inst := range tx.All() {
			counts[[2]string{inst.Proto, inst.Service}]++
		}
		for typ := range tx.Types() {
			if counts[[2]string{typ.Proto, typ.Service}] != typ.Instances {
				t.Fatalf("type %+v, but %d instances", typ, counts[[2]string{typ.Proto, typ.Service}])
			}
		}
	})
}

// FuzzCheckpoint feeds arbitrary checkpoints to their loader.
func FuzzCheckpoint(f *testing.F) {
	f.Add([]byte(checkpointMagic))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newRegistry(Options{})
		tx := newTx(r.db, r.Catalog)
		defer tx.txn.Abort()
		r.loadCheckpoint(tx, bytes.NewReader(data), int64(len(data)))
	})
}

// TestWriteFuzzSeeds regenerates testdata/fuzz from real files when
// ANNUAIRE_WRITE_SEEDS is set.
func TestWriteFuzzSeeds(t *testing.T) {
	if os.Getenv("ANNUAIRE_WRITE_SEEDS") == "" {
		t.Skip("set ANNUAIRE_WRITE_SEEDS=1 to regenerate the fuzz seeds")
	}
	dir := t.TempDir()
	r := mustOpen(t, dir, Options{Serial: 1, SegmentSize: 600})
	id := mustRegister(t, r, echoInstance(1), hostFor(1))
	mustRegister(t, r, echoInstance(2), nil)
	r.SetHealth(id, Critical)
	r.Deregister(id)
	r.Close()
	segs, _ := listSegments(dir)
	write := func(name, file string, data []byte) {
		p := filepath.Join("testdata", "fuzz", name, file)
		os.MkdirAll(filepath.Dir(p), 0o755)
		if err := os.WriteFile(p, fmt.Appendf(nil, "go test fuzz v1\n[]byte(%q)\n", data), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	for _, s := range segs {
		data, _ := os.ReadFile(filepath.Join(dir, segmentName(s)))
		write("FuzzJournal", fmt.Sprintf("segment-%d", s), data)
		write("FuzzJournal", fmt.Sprintf("segment-%d-cut", s), data[:len(data)-7])
		flipped := append([]byte(nil), data...)
		flipped[len(flipped)/2] ^= 0x20
		write("FuzzJournal", fmt.Sprintf("segment-%d-flipped", s), flipped)
	}
	cp, _ := os.ReadFile(filepath.Join(dir, "checkpoint"))
	write("FuzzCheckpoint", "checkpoint", cp)
	write("FuzzCheckpoint", "checkpoint-cut", cp[:len(cp)-3])
}

// TestReadFramesShortReads checks that reading frames from a stream that
// returns them a byte at a time, as a file may, accepts and rejects what
// reading them from memory does, at the same offsets: for every cut of a
// file and for a flipped byte in each of its frames.
func TestReadFramesShortReads(t *testing.T) {
	var file []byte
	file = append(file, checkpointMagic...)
	for i := range 5 {
		file = appendFrame(file, []byte(fmt.Sprintf(`{"frame":%d,"pad":"%0*d"}`, i, i*300, 0)))
	}
	file = append(file[:len(file):len(file)], file[len(checkpointMagic):]...) // and a copy of the frames
	var variants [][]byte
	for n := range len(file) + 1 {
		variants = append(variants, file[:n])
	}
	for off := 0; off < len(file); off += 97 {
		v := bytes.Clone(file)
		v[off] ^= 0x20
		variants = append(variants, v)
	}
	big := bytes.Clone(file[:len(checkpointMagic)+frameHeader])
	big[len(checkpointMagic)+3] = 0xff // a length beyond maxFramePayload
	variants = append(variants, big)
	for _, data := range variants {
		var scanned, read []int64
		// In memory, and through a reader that returns one byte per
		// read, as a file may return short reads.
		wantEnd, want := scanFrames(data, checkpointMagic, func(off int64, _ []byte) error {
			scanned = append(scanned, off)
			return nil
		})
		end, got := readFrames(iotest.OneByteReader(bytes.NewReader(data)), int64(len(data)), checkpointMagic, func(off int64, _ []byte) error {
			read = append(read, off)
			return nil
		})
		if end != wantEnd || fmt.Sprint(got) != fmt.Sprint(want) || !slices.Equal(read, scanned) {
			t.Fatalf("%d bytes: read one byte at a time, frames end at %d (%v) after frames %v; in memory at %d (%v) after %v",
				len(data), end, got, read, wantEnd, want, scanned)
		}
	}
}
