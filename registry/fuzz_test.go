package registry

import (
	"fmt"
	"log/slog"
	"os"
	"path/filepath"
	"testing"
)

// FuzzJournal feeds arbitrary segment files to the decoder and replay that
// Open uses: no panic, no accepted prefix beyond the data, and a registry
// whose derived rows agree with its instances.
func FuzzJournal(f *testing.F) {
	f.Add([]byte(journalMagic))
	f.Add(appendFrame([]byte(journalMagic), []byte(`{"prev":1,"serial":2,"changes":[{"host":{"name":"a","addresses":["10.0.0.1"],"ttl":5}}]}`)))
	f.Add(appendFrame([]byte(journalMagic), []byte(`{"prev":1,"serial":2,"changes":[{"delete":true,"instance":{"id":"x","name":"echo","proto":"tcp","instance":"a","host":"a","port":7}}]}`)))
	f.Fuzz(func(t *testing.T, data []byte) {
		r := newRegistry(Options{Logger: slog.New(slog.DiscardHandler)})
		txn := r.db.Txn(true)
		defer txn.Abort()
		tx := &Tx{Snapshot: Snapshot{txn: txn}}
		serial, first := uint32(0), true
		end, damage := scanFrames(data, journalMagic, func(off int64, payload []byte) error {
			err := r.replayRecord(tx, payload, &serial, first)
			first = false
			return err
		})
		if end > int64(len(data)) || (damage == nil && end != int64(len(data))) {
			t.Fatalf("end %d of %d bytes, damage %v", end, len(data), damage)
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
		txn := r.db.Txn(true)
		defer txn.Abort()
		r.loadCheckpoint(&Tx{Snapshot: Snapshot{txn: txn}}, data)
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
