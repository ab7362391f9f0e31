package registry

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"testing"
)

// mustOpen opens a registry on dir, logging into the test's log.
func mustOpen(tb testing.TB, dir string, opts Options) *Registry {
	tb.Helper()
	if opts.Logger == nil {
		opts.Logger = slog.New(slog.NewTextHandler(tbWriter{tb}, nil))
	}
	r, err := Open(dir, opts)
	if err != nil {
		tb.Fatalf("Open(%s): %v", dir, err)
	}
	return r
}

type tbWriter struct{ tb testing.TB }

func (w tbWriter) Write(p []byte) (int, error) {
	w.tb.Log(strings.TrimSpace(string(p)))
	return len(p), nil
}

// logBuffer collects log lines for assertions.
type logBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (l *logBuffer) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.Write(p)
}

func (l *logBuffer) String() string {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.buf.String()
}

func echoInstance(i int) Instance {
	return Instance{Service: "echo", Host: fmt.Sprintf("h%d", i), Port: uint16(1000 + i%60000), TTL: DefaultTTL, TXT: TXT{"n=" + strconv.Itoa(i)}}
}

func hostFor(i int) *Host {
	return &Host{Name: fmt.Sprintf("h%d", i), Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i)})}, Auto: true}
}

// dump is the registry's content as text, for comparisons.
func dump(s *Snapshot) string {
	var b strings.Builder
	fmt.Fprintf(&b, "serial %d\n", s.Serial())
	for inst := range s.All() {
		row := *inst
		row.Check = nil     // its pointer differs, not what it points to
		row.idKeyed = false // how its ID key is made, not what it reads
		fmt.Fprintf(&b, "%+v %+v\n", row, inst.Check)
	}
	for h := range s.Hosts() {
		fmt.Fprintf(&b, "%+v\n", *h)
	}
	for t := range s.Types() {
		fmt.Fprintf(&b, "%+v\n", t)
	}
	for st := range rows[Stamp](&s.reader, tableStamps, indexID+"_prefix", netip.Prefix{}) {
		fmt.Fprintf(&b, "stamp %+v\n", *st)
	}
	return b.String()
}

func TestOpenRestore(t *testing.T) {
	for _, seg := range []int64{0, 2048} { // 2048: many segments and checkpoints
		t.Run(fmt.Sprintf("segment=%d", seg), func(t *testing.T) {
			dir := filepath.Join(t.TempDir(), "data")
			r := mustOpen(t, dir, Options{Serial: 100, SegmentSize: seg})
			var ids []string
			for i := range 50 {
				ids = append(ids, mustRegister(t, r, echoInstance(i), hostFor(i)))
			}
			for _, id := range ids[:10] {
				if err := r.Deregister(id); err != nil {
					t.Fatal(err)
				}
			}
			if err := r.SetHealth(ids[20], Critical); err != nil {
				t.Fatal(err)
			}
			want := dump(r.Snapshot())
			serial := r.Snapshot().Serial()
			if serial != 100+50+10+1 {
				t.Errorf("serial = %d", serial)
			}
			if err := r.Close(); err != nil {
				t.Fatal(err)
			}
			if err := r.Close(); err != nil {
				t.Errorf("second Close: %v", err)
			}
			if _, err := r.Register(echoInstance(99), nil); !errors.Is(err, ErrClosed) {
				t.Errorf("Register after Close: %v", err)
			}
			if fi, err := os.Stat(dir); err != nil || fi.Mode().Perm() != 0o700 {
				t.Errorf("data directory mode: %v %v", fi.Mode(), err)
			}

			r = mustOpen(t, dir, Options{Serial: 5})
			defer r.Close()
			if got := dump(r.Snapshot()); got != want {
				t.Errorf("restored registry differs:\n got %s\nwant %s", got, want)
			}
			sets, ok := r.History(serial - 3)
			if !ok || len(sets) != 3 || sets[2].Serial != serial {
				t.Errorf("History(serial-3) = %d sets, %v", len(sets), ok)
			}
			id := mustRegister(t, r, echoInstance(200), nil)
			if r.Snapshot().Serial() != serial+1 {
				t.Errorf("serial after restart = %d, want %d", r.Snapshot().Serial(), serial+1)
			}
			if _, ok := r.Snapshot().Instance(id); !ok {
				t.Error("write after restore lost")
			}
		})
	}
}

func TestHistory(t *testing.T) {
	r := New(10)
	id := mustRegister(t, r, Instance{Service: "echo", Host: "a", Port: 7}, &Host{Name: "a", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.1")}, Auto: true})
	mustRegister(t, r, Instance{Service: "echo", Host: "a", Port: 7, Weight: 5}, nil)
	if err := r.Deregister(id); err != nil {
		t.Fatal(err)
	}
	sets, ok := r.History(10)
	if !ok || len(sets) != 3 {
		t.Fatalf("History(10) = %d sets, %v", len(sets), ok)
	}
	if sets[0].Prev != 10 || sets[0].Serial != 11 || sets[2].Serial != 13 {
		t.Errorf("serials: %+v", sets)
	}
	// set 1 replaced the instance: the old row rides along.
	c := sets[1].Changes[0]
	if old, ok := c.Old.(*Instance); !ok || old.Weight != 0 || c.Row.(*Instance).Weight != 5 {
		t.Errorf("replacement change = %+v", c)
	}
	// set 2 deleted it and collected its automatic host.
	if len(sets[2].Changes) != 2 || !sets[2].Changes[0].Delete || sets[2].Changes[0].Old.(*Instance) == nil ||
		!sets[2].Changes[1].Delete || sets[2].Changes[1].Old.(*Host) == nil {
		t.Errorf("delete changes = %+v", sets[2].Changes)
	}
	if sets, ok := r.History(13); !ok || len(sets) != 0 {
		t.Errorf("History(current) = %v, %v", sets, ok)
	}
	if _, ok := r.History(9); ok {
		t.Error("History reaches before the first change")
	}

	small := newRegistry(Options{HistorySize: 2})
	small.snap.Store(New(1).Snapshot())
	small.db = New(1).db
	for i := range 5 {
		mustRegister(t, small, echoInstance(i), nil)
	}
	if _, ok := small.History(small.Snapshot().Serial() - 3); ok {
		t.Error("history longer than HistorySize")
	}
	if sets, ok := small.History(small.Snapshot().Serial() - 2); !ok || len(sets) != 2 {
		t.Errorf("History(serial-2) = %d, %v", len(sets), ok)
	}
}

func TestLock(t *testing.T) {
	dir := t.TempDir()
	if _, err := LockOwner(dir); !errors.Is(err, ErrNotLocked) {
		t.Errorf("LockOwner on a fresh dir: %v", err)
	}
	r := mustOpen(t, dir, Options{})
	_, err := Open(dir, Options{})
	var le *LockedError
	if !errors.As(err, &le) || le.PID != os.Getpid() || !errors.Is(err, ErrLocked) {
		t.Fatalf("second Open: %v", err)
	}
	if want := fmt.Sprintf("data directory %s is in use by pid %d", dir, os.Getpid()); err.Error() != want {
		t.Errorf("error = %q, want %q", err, want)
	}
	if pid, err := LockOwner(dir); err != nil || pid != os.Getpid() {
		t.Errorf("LockOwner = %d, %v", pid, err)
	}
	r.Close()
	if _, err := LockOwner(dir); !errors.Is(err, ErrNotLocked) {
		t.Errorf("LockOwner after Close: %v", err)
	}
	mustOpen(t, dir, Options{}).Close()
}

func TestGroupCommit(t *testing.T) {
	r := mustOpen(t, t.TempDir(), Options{})
	defer r.Close()
	const writers, each = 16, 50
	var wg sync.WaitGroup
	for w := range writers {
		wg.Go(func() {
			for i := range each {
				if _, err := r.Register(echoInstance(w*each+i), nil); err != nil {
					t.Error(err)
					return
				}
			}
		})
	}
	wg.Wait()
	n := 0
	for range r.Snapshot().All() {
		n++
	}
	if n != writers*each {
		t.Errorf("%d instances, want %d", n, writers*each)
	}
	r.j.mu.Lock()
	syncs, records := r.j.syncs, r.j.seq
	r.j.mu.Unlock()
	t.Logf("%d records in %d fsyncs", records, syncs)
	if syncs >= records {
		t.Errorf("no group commit: %d fsyncs for %d records", syncs, records)
	}
}

func TestBulkIsOneFsync(t *testing.T) {
	r := mustOpen(t, t.TempDir(), Options{})
	defer r.Close()
	r.j.mu.Lock()
	before := r.j.syncs
	r.j.mu.Unlock()
	if _, err := r.Update(func(tx *Tx) error {
		for i := range 5000 {
			if _, err := tx.PutInstance(echoInstance(i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	r.j.mu.Lock()
	defer r.j.mu.Unlock()
	if got := r.j.syncs - before; got != 1 {
		t.Errorf("bulk update took %d fsyncs", got)
	}
}

// writeJournal makes a data directory holding n registrations in one
// segment and returns it with the offsets where each record starts and
// where the last one ends: the zeros written ahead follow.
func writeJournal(t *testing.T, n int) (dir string, offsets []int64, end int64) {
	dir = t.TempDir()
	r := mustOpen(t, dir, Options{Serial: 1})
	for i := range n {
		r.j.mu.Lock()
		offsets = append(offsets, r.j.size)
		r.j.mu.Unlock()
		mustRegister(t, r, echoInstance(i), nil)
	}
	r.j.mu.Lock()
	end = r.j.size
	r.j.mu.Unlock()
	r.Close()
	return dir, offsets, end
}

func copyDir(t *testing.T, from string) string {
	to := t.TempDir()
	ents, _ := os.ReadDir(from)
	for _, e := range ents {
		b, err := os.ReadFile(filepath.Join(from, e.Name()))
		if err != nil {
			t.Fatal(err)
		}
		os.WriteFile(filepath.Join(to, e.Name()), b, 0o600)
	}
	return to
}

func countInstances(s interface{ All() iter.Seq[*Instance] }) int {
	n := 0
	for range s.All() {
		n++
	}
	return n
}

func TestTruncatedJournal(t *testing.T) {
	const n = 5
	src, offsets, end := writeJournal(t, n)
	last := offsets[n-1]
	for cut := last; cut < end; cut++ {
		dir := copyDir(t, src)
		seg := filepath.Join(dir, segmentName(1))
		if err := os.Truncate(seg, cut); err != nil {
			t.Fatal(err)
		}
		var logs logBuffer
		r, err := Open(dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatalf("cut at %d: %v", cut, err)
		}
		if got := countInstances(r.Snapshot()); got != n-1 {
			t.Errorf("cut at %d: %d instances, want %d", cut, got, n-1)
		}
		if s := r.Snapshot().Serial(); cut > last && s <= 1+n-1 {
			t.Errorf("cut at %d: serial %d did not move past the dropped record", cut, s)
		}
		if cut > last {
			want := fmt.Sprintf("offset=%d bytes=%d", last, cut-last)
			if !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "file="+seg) {
				t.Errorf("cut at %d: log does not say %q:\n%s", cut, want, logs.String())
			}
		}
		// The next write lands after the last whole record and survives.
		mustRegister(t, r, echoInstance(100), nil)
		r.Close()
		r = mustOpen(t, dir, Options{})
		if got := countInstances(r.Snapshot()); got != n {
			t.Errorf("cut at %d: after a write and a restart, %d instances, want %d", cut, got, n)
		}
		r.Close()
	}
}

// TestCorruptJournal flips a byte of a record followed by intact ones:
// in its length, its length's high byte, its payload. Open refuses to
// start; with Recover it keeps every record but the damaged one.
func TestCorruptJournal(t *testing.T) {
	const n = 6
	src, offsets, _ := writeJournal(t, n)
	for _, at := range []int64{offsets[3], offsets[3] + 3, offsets[3] + 20} {
		dir := copyDir(t, src)
		seg := filepath.Join(dir, segmentName(1))
		b, _ := os.ReadFile(seg)
		b[at] ^= 0x55
		os.WriteFile(seg, b, 0o600)
		_, err := Open(dir, Options{Logger: slog.New(slog.DiscardHandler)})
		want := fmt.Sprintf("%s at offset %d: ", seg, offsets[3])
		if !errors.Is(err, ErrDamaged) || !strings.Contains(err.Error(), want) || !strings.Contains(err.Error(), "2 intact records follow") {
			t.Errorf("flip at %d: Open = %v, want a refusal naming %q and the 2 records after", at, err, want)
		}
		var logs logBuffer
		r, err := Open(dir, Options{Recover: true, Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		if err != nil {
			t.Fatalf("flip at %d: %v", at, err)
		}
		if got := countInstances(r.Snapshot()); got != n-1 {
			t.Errorf("flip at %d: %d instances, want the %d around the damage", at, got, n-1)
		}
		want = fmt.Sprintf("offset=%d bytes=%d", offsets[3], offsets[4]-offsets[3])
		if !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "level=ERROR") ||
			!strings.Contains(logs.String(), `lost="the change set of serial 5"`) || !strings.Contains(logs.String(), "intact_after=2") {
			t.Errorf("flip at %d: log does not say %q, the serial lost and the records after, at error level:\n%s", at, want, logs.String())
		}
		if kept, err := os.ReadFile(seg + ".damaged"); err != nil || !bytes.Equal(kept, b) {
			t.Errorf("damaged segment not kept aside whole: %v", err)
		}
		r.Close()
	}
}

// TestJournalZeroTail checks the zeros written ahead of frames: writes
// fill them without growing the file, a restart takes them for the end of
// the journal without a word, and a frame a crash left half written over
// them is dropped as torn, not reported as damage.
func TestJournalZeroTail(t *testing.T) {
	const n = 5
	src, offsets, end := writeJournal(t, n)
	seg := filepath.Join(src, segmentName(1))
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	if len(b) != zeroChunk || bytes.ContainsFunc(b[end:], func(r rune) bool { return r != 0 }) {
		t.Fatalf("segment is %d bytes, non-zero past %d: want %d bytes, zeros after the last frame", len(b), end, zeroChunk)
	}

	t.Run("clean", func(t *testing.T) {
		dir := copyDir(t, src)
		var logs logBuffer
		r := mustOpen(t, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, &slog.HandlerOptions{Level: slog.LevelWarn}))})
		if got := countInstances(r.Snapshot()); got != n {
			t.Errorf("%d instances, want %d", got, n)
		}
		if logs.String() != "" {
			t.Errorf("a clean journal logged:\n%s", logs.String())
		}
		mustRegister(t, r, echoInstance(100), nil)
		r.Close()
		r = mustOpen(t, dir, Options{})
		defer r.Close()
		if got := countInstances(r.Snapshot()); got != n+1 {
			t.Errorf("after a write and a restart, %d instances, want %d", got, n+1)
		}
		if fi, _ := os.Stat(filepath.Join(dir, segmentName(1))); fi.Size() != zeroChunk {
			t.Errorf("segment grew to %d bytes for one more frame", fi.Size())
		}
	})

	// A crash while the last frame was written: its first bytes are there,
	// zeros where the rest should be.
	last := offsets[n-1]
	for _, kept := range []int64{3, frameHeader, frameHeader + 10, end - last - 1} {
		t.Run(fmt.Sprintf("torn-%d", kept), func(t *testing.T) {
			dir := copyDir(t, src)
			seg := filepath.Join(dir, segmentName(1))
			torn := append([]byte(nil), b...)
			clear(torn[last+kept : end])
			os.WriteFile(seg, torn, 0o600)
			var logs logBuffer
			r := mustOpen(t, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
			if got := countInstances(r.Snapshot()); got != n-1 {
				t.Errorf("%d instances, want %d", got, n-1)
			}
			// what is left of the frame, its own zeros aside
			want := fmt.Sprintf("offset=%d bytes=%d", last, len(bytes.TrimRight(b[last:last+kept], "\x00")))
			if !strings.Contains(logs.String(), want) || !strings.Contains(logs.String(), "level=WARN") || strings.Contains(logs.String(), "level=ERROR") {
				t.Errorf("log does not say %q at warning level:\n%s", want, logs.String())
			}
			mustRegister(t, r, echoInstance(100), nil)
			r.Close()
			r = mustOpen(t, dir, Options{})
			defer r.Close()
			if got := countInstances(r.Snapshot()); got != n {
				t.Errorf("after a write and a restart, %d instances, want %d", got, n)
			}
		})
	}

	// Bytes after the zeros, with no record after them, are the end of
	// the journal too: dropped, kept aside, and reported where they are.
	t.Run("garbage-after-zeros", func(t *testing.T) {
		dir := copyDir(t, src)
		seg := filepath.Join(dir, segmentName(1))
		bad := append([]byte(nil), b...)
		bad[len(bad)-1] = 1
		os.WriteFile(seg, bad, 0o600)
		var logs logBuffer
		r := mustOpen(t, dir, Options{Logger: slog.New(slog.NewTextHandler(&logs, nil))})
		defer r.Close()
		if got := countInstances(r.Snapshot()); got != n {
			t.Errorf("%d instances, want %d", got, n)
		}
		if want := fmt.Sprintf("offset=%d bytes=%d", end, len(bad)-int(end)); !strings.Contains(logs.String(), want) {
			t.Errorf("log does not say %q:\n%s", want, logs.String())
		}
	})
}

func TestCorruptCheckpoint(t *testing.T) {
	dir := t.TempDir()
	r := mustOpen(t, dir, Options{SegmentSize: 512})
	for i := range 20 {
		mustRegister(t, r, echoInstance(i), nil)
	}
	r.Close()
	cp := filepath.Join(dir, "checkpoint")
	b, err := os.ReadFile(cp)
	if err != nil {
		t.Fatalf("no checkpoint written: %v", err)
	}
	b[len(b)/2] ^= 1
	os.WriteFile(cp, b, 0o600)
	_, err = Open(dir, Options{})
	if err == nil || !strings.Contains(err.Error(), "checkpoint "+cp+" is damaged") || !strings.Contains(err.Error(), "refusing to start") {
		t.Errorf("Open with a damaged checkpoint: %v", err)
	}
}

// TestKill9 runs a child that registers instances and acknowledges each on
// stdout after Register returns, kills it with SIGKILL mid-stream, and
// checks that every acknowledged registration survived.
func TestKill9(t *testing.T) {
	if dir := os.Getenv("ANNUAIRE_REGISTRY_CHILD"); dir != "" {
		r, err := Open(dir, Options{Logger: slog.New(slog.DiscardHandler)})
		if err != nil {
			fmt.Println("error", err)
			os.Exit(1)
		}
		for i := range 200 {
			id, err := r.Register(echoInstance(i), hostFor(i))
			if err != nil {
				fmt.Println("error", err)
				os.Exit(1)
			}
			fmt.Printf("ack %s %d\n", id, r.Snapshot().Serial())
		}
		select {} // wait for the kill
	}
	exe, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	dir := t.TempDir()
	cmd := exec.Command(exe, "-test.run=^TestKill9$")
	cmd.Env = append(os.Environ(), "ANNUAIRE_REGISTRY_CHILD="+dir)
	out, err := cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	acked := map[string]bool{}
	var serial uint64
	sc := bufio.NewScanner(out)
	for sc.Scan() {
		f := strings.Fields(sc.Text())
		if len(f) == 3 && f[0] == "ack" {
			acked[f[1]] = true
			serial, _ = strconv.ParseUint(f[2], 10, 32)
		} else if f[0] == "error" {
			t.Fatal(sc.Text())
		}
		if len(acked) == 120 {
			cmd.Process.Signal(syscall.SIGKILL)
			break
		}
	}
	cmd.Wait()
	r := mustOpen(t, dir, Options{})
	defer r.Close()
	s := r.Snapshot()
	for id := range acked {
		if _, ok := s.Instance(id); !ok {
			t.Errorf("acknowledged %s lost", id)
		}
	}
	if uint64(s.Serial()) < serial {
		t.Errorf("serial went back from %d to %d", serial, s.Serial())
	}
	t.Logf("%d acknowledged, %d restored, serial %d (last acknowledged %d)", len(acked), countInstances(s), s.Serial(), serial)
}

var errAbort = errors.New("abort")

// TestRestoreAcrossBatches restores more rows than one restore batch, over
// many types and automatic hosts: the type and host counts, kept pending
// across the batches and written at the end, must come back as they were,
// from the journal and from a checkpoint.
func TestRestoreAcrossBatches(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Logger: slog.New(slog.DiscardHandler)}
	r := mustOpen(t, dir, opts)
	const n = 3*restoreBatch + 17
	if _, err := r.Update(func(tx *Tx) error {
		for i := range 20 {
			if err := tx.PutHost(*hostFor(i)); err != nil {
				return err
			}
		}
		for i := range n {
			inst := Instance{ID: fmt.Sprintf("i%d", i), Service: fmt.Sprintf("s%d", i%37), Host: fmt.Sprintf("h%d", i%20), Port: uint16(1 + i)}
			if _, err := tx.PutInstance(inst); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	// Every instance of host h3 goes in a later record, and one type loses
	// its health.
	if _, err := r.Update(func(tx *Tx) error {
		for i := 3; i < n; i += 20 {
			if err := tx.DeleteInstance(fmt.Sprintf("i%d", i)); err != nil {
				return err
			}
		}
		for i := 5; i < n; i += 37 {
			if i%20 == 3 {
				continue
			}
			if err := tx.SetHealth(fmt.Sprintf("i%d", i), Critical); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	want := dump(r.Snapshot())
	if _, ok := r.Snapshot().Host("h3"); ok {
		t.Fatal("automatic host h3 kept after its last instance went")
	}
	check := func(what string) {
		t.Helper()
		if got := dump(r.Snapshot()); got != want {
			t.Fatalf("registry restored from %s differs:\n got %s\nwant %s", what, got, want)
		}
		// The host counts came back: h4 goes with its last instance, and
		// not before.
		if _, err := r.Update(func(tx *Tx) error {
			last := (n-1-4)/20*20 + 4
			for i := 4; i < last; i += 20 {
				if err := tx.DeleteInstance(fmt.Sprintf("i%d", i)); err != nil {
					return err
				}
			}
			if _, ok := tx.Host("h4"); !ok {
				t.Errorf("%s: host h4 collected while an instance still targets it", what)
			}
			if err := tx.DeleteInstance(fmt.Sprintf("i%d", last)); err != nil {
				return err
			}
			if _, ok := tx.Host("h4"); ok {
				t.Errorf("%s: host h4 kept after its last instance went", what)
			}
			return errAbort
		}); !errors.Is(err, errAbort) {
			t.Fatal(err)
		}
	}
	r.Close()
	r = mustOpen(t, dir, opts)
	check("the journal")
	// as rotate does: the segment, then the checkpoint that names it
	f, _, err := r.j.createSegment(r.j.seg + 1)
	if err != nil {
		t.Fatal(err)
	}
	f.Close()
	if _, err := writeCheckpoint(dir, r.Snapshot(), nil, r.j.seg+1); err != nil {
		t.Fatal(err)
	}
	r.Close()
	r = mustOpen(t, dir, opts)
	defer r.Close()
	check("a checkpoint")
}
