package web

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/annuaire/annuaire/registry"
)

// mirror is what a reader of /api/events keeps: the registry's rows,
// built from the snapshot and the changes alone.
type mirror struct {
	serial    uint32
	instances map[string]registry.Instance
	hosts     map[string]registry.Host
	events    []string // "snapshot", "change": what was applied
}

type streamRow struct {
	Delete   bool               `json:"delete"`
	Instance *registry.Instance `json:"instance"`
	Host     *registry.Host     `json:"host"`
}

// apply reads one event into m, and fails the test on what a reader
// could not apply: a change that does not follow the serial it has.
func (m *mirror) apply(t *testing.T, event, id, data string) {
	t.Helper()
	var body struct {
		Prev    uint32      `json:"prev"`
		Serial  uint32      `json:"serial"`
		Changes []streamRow `json:"changes"`
		More    bool        `json:"more"`
	}
	if err := json.Unmarshal([]byte(data), &body); err != nil {
		t.Fatalf("%s event: %v: %s", event, err, data)
	}
	switch event {
	case "snapshot":
		if len(m.events) == 0 || m.events[len(m.events)-1] != "snapshot-more" {
			m.instances, m.hosts = map[string]registry.Instance{}, map[string]registry.Host{}
		}
		if body.More != (id == "") {
			t.Errorf("snapshot event with more=%v and id %q", body.More, id)
		}
		if body.More {
			event = "snapshot-more"
		}
	case "change":
		if body.Prev != m.serial {
			t.Fatalf("change from serial %d to a reader at %d", body.Prev, m.serial)
		}
		if id != strconv.Itoa(int(body.Serial)) {
			t.Errorf("change to %d has id %q", body.Serial, id)
		}
	default:
		t.Fatalf("unknown event %q", event)
	}
	for _, c := range body.Changes {
		switch {
		case c.Instance != nil && c.Delete:
			delete(m.instances, strings.ToLower(c.Instance.ID))
		case c.Instance != nil:
			m.instances[strings.ToLower(c.Instance.ID)] = *c.Instance
		case c.Host != nil && c.Delete:
			delete(m.hosts, strings.ToLower(c.Host.Name))
		case c.Host != nil:
			m.hosts[strings.ToLower(c.Host.Name)] = *c.Host
		default:
			t.Fatalf("a row with neither instance nor host: %s", data)
		}
	}
	m.serial = body.Serial
	m.events = append(m.events, event)
}

// check fails unless m holds what snap holds.
func (m *mirror) check(t *testing.T, snap *registry.Snapshot) {
	t.Helper()
	if m.serial != snap.Serial() {
		t.Errorf("mirror at serial %d, registry at %d", m.serial, snap.Serial())
	}
	n := 0
	for inst := range snap.All() {
		n++
		got, ok := m.instances[strings.ToLower(inst.ID)]
		if !ok || got.Port != inst.Port || got.Health != inst.Health || got.Host != inst.Host {
			t.Errorf("instance %s: mirror has %+v, registry %+v", inst.ID, got, *inst)
		}
	}
	if n != len(m.instances) {
		t.Errorf("mirror has %d instances, registry %d", len(m.instances), n)
	}
	n = 0
	for h := range snap.Hosts() {
		n++
		if got, ok := m.hosts[strings.ToLower(h.Name)]; !ok || fmt.Sprint(got.Addrs) != fmt.Sprint(h.Addrs) {
			t.Errorf("host %s: mirror has %+v, registry %+v", h.Name, got, *h)
		}
	}
	if n != len(m.hosts) {
		t.Errorf("mirror has %d hosts, registry %d", len(m.hosts), n)
	}
}

// openEvents opens /api/events with the given headers.
func openEvents(t *testing.T, base string, hdr ...string) *bufio.Reader {
	t.Helper()
	req, err := http.NewRequestWithContext(t.Context(), "GET", base+"/api/events", nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { resp.Body.Close() })
	if ct := resp.Header.Get("Content-Type"); resp.StatusCode != 200 || ct != "text/event-stream" {
		t.Fatalf("/api/events: %d %q", resp.StatusCode, ct)
	}
	return bufio.NewReader(resp.Body)
}

// follow applies events to m until it reaches serial.
func (m *mirror) follow(t *testing.T, br *bufio.Reader, serial uint32) {
	t.Helper()
	for m.serial != serial || len(m.events) == 0 || m.events[len(m.events)-1] == "snapshot-more" {
		id, event, data := readPageEvent(t, br)
		if id == "end" {
			t.Fatalf("stream ended at serial %d, want %d", m.serial, serial)
		}
		m.apply(t, event, id, data)
	}
}

// TestEvents: /api/events sends the registry once, in snapshot events,
// then each change set as it is, and a reader that applies them holds
// what the registry holds. Each change event carries its change, not the
// directory (it used to send every instance after every change).
func TestEvents(t *testing.T) {
	reg := registry.New(1)
	s := &Server{Token: testToken, Registry: reg}
	base := startServer(t, s)
	// More rows than a snapshot event holds.
	addHosts(t, reg, 0, snapshotChunk+20)

	var m mirror
	br := openEvents(t, base)
	m.follow(t, br, reg.Snapshot().Serial())
	if m.events[0] != "snapshot-more" || m.events[len(m.events)-1] != "snapshot" {
		t.Errorf("events %q, want snapshot events of at most %d rows", m.events, snapshotChunk)
	}
	m.check(t, reg.Snapshot())

	id := register(t, base, `{"name":"echo","port":7007}`)["id"].(string)
	evID, event, data := readPageEvent(t, br)
	if event != "change" || strings.Count(data, `"instance":{`) != 1 {
		t.Fatalf("after a registration: %s %s", event, data)
	}
	m.apply(t, event, evID, data)
	call(t, "PUT", base+"/api/services/"+id+"/heartbeat", testToken, "") // not accepted: no change
	if err := reg.SetHealth(id, registry.Critical); err != nil {
		t.Fatal(err)
	}
	call(t, "DELETE", base+"/api/services/"+id, testToken, "")
	m.follow(t, br, reg.Snapshot().Serial())
	m.check(t, reg.Snapshot())

	// A reader that comes back with the id it had gets what it missed;
	// with an id the registry no longer has, a snapshot.
	have := m.serial
	addHosts(t, reg, 1000, 3)
	m2 := mirror{serial: have, instances: m.instances, hosts: m.hosts, events: []string{"snapshot"}}
	m2.follow(t, openEvents(t, base, "Last-Event-ID", strconv.Itoa(int(have))), reg.Snapshot().Serial())
	if got := strings.Join(m2.events, ","); got != "snapshot,change,change,change" {
		t.Errorf("after Last-Event-ID: events %s, want three changes", got)
	}
	m2.check(t, reg.Snapshot())
	var m3 mirror
	m3.follow(t, openEvents(t, base, "Last-Event-ID", "4000000000"), reg.Snapshot().Serial())
	if m3.events[0] != "snapshot-more" {
		t.Errorf("after an unknown Last-Event-ID: events %q", m3.events)
	}
	m3.check(t, reg.Snapshot())

	// Shutdown ends the streams rather than waiting for their clients.
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := s.Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	if d := time.Since(start); d > 4*time.Second {
		t.Errorf("Shutdown took %v with an open event stream", d)
	}
	io.ReadAll(br)
}

// TestEventsSnapshotBounded: a snapshot event ends before snapshotBytes,
// whatever its rows weigh: a stream holds its event until
// the reader takes it, for the whole write deadline if it never does.
// 500 rows of 2 KB of TXT were one event of 1 MB: 2,048 streams that
// never read held 2 GB (bench/streams/run.sh).
func TestEventsSnapshotBounded(t *testing.T) {
	reg := registry.New(1)
	s := &Server{Token: testToken, Registry: reg}
	base := startServer(t, s)
	var txt registry.TXT
	for k := range 16 {
		txt = append(txt, fmt.Sprintf("k%d=%0100d", k, 0))
	}
	const n = 300
	if _, err := reg.Update(func(tx *registry.Tx) error {
		for i := range n {
			if _, err := tx.PutInstance(registry.Instance{Service: "big", Host: "h", Port: uint16(1000 + i), TXT: txt}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	var m mirror
	br := openEvents(t, base)
	largest, rowMax := 0, 0
	for m.serial != reg.Snapshot().Serial() || len(m.events) == 0 || m.events[len(m.events)-1] == "snapshot-more" {
		id, event, data := readPageEvent(t, br)
		if id == "end" {
			t.Fatal("the stream ended")
		}
		largest = max(largest, len(data))
		m.apply(t, event, id, data)
	}
	m.check(t, reg.Snapshot())
	for inst := range reg.Snapshot().All() {
		b, _ := json.Marshal(streamChange{Instance: inst})
		rowMax = max(rowMax, len(b))
	}
	if limit := max(snapshotBytes, rowMax) + 100; largest > limit {
		t.Errorf("a snapshot event of %d bytes, more than %d (rows of %d bytes)", largest, limit, rowMax)
	}
	if len(m.events) < n*rowMax/snapshotBytes {
		t.Errorf("%d rows of %d bytes in %d events", n, rowMax, len(m.events))
	}
}

// TestEventsEncoders: streams whose readers go in the middle of their
// snapshot give back their encoder slot (a slot per P, held while a
// chunk is encoded, never while it is written), and a reader that comes
// after them gets its whole snapshot.
func TestEventsEncoders(t *testing.T) {
	reg := registry.New(1)
	s := &Server{Token: testToken, Registry: reg, StreamWriteTimeout: 200 * time.Millisecond}
	base := startServer(t, s)
	if _, err := reg.Update(func(tx *registry.Tx) error {
		for i := range 3000 {
			if _, err := tx.PutInstance(registry.Instance{Service: "s" + strconv.Itoa(i%50), Host: "h", Port: uint16(1000 + i)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	for i := range 40 {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		c.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(c, "GET /api/events HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n")
		if i%2 == 0 {
			c.Read(make([]byte, 100)) // then goes, the snapshot half sent
			c.Close()
		} else {
			defer c.Close() // never reads: dropped by the write deadline
		}
	}
	waitFor(t, func() bool { return s.Streams() == 0 }, "the streams to end")
	if n := len(s.encoders); n != 0 {
		t.Errorf("%d encoder slots still held with no stream open", n)
	}
	var m mirror
	m.follow(t, openEvents(t, base), reg.Snapshot().Serial())
	m.check(t, reg.Snapshot())
}

// addHosts adds n hosts, one update each, named from first on.
func addHosts(t testing.TB, reg *registry.Registry, first, n int) {
	t.Helper()
	for i := first; i < first+n; i++ {
		a := netip.AddrFrom4([4]byte{10, byte(i >> 16), byte(i >> 8), byte(i)})
		if _, err := reg.Update(func(tx *registry.Tx) error {
			return tx.PutHost(registry.Host{Name: "n" + strconv.Itoa(i), Addrs: []netip.Addr{a}})
		}); err != nil {
			t.Fatal(err)
		}
	}
}

// TestEventsEncodedOnce: with 50 readers, 20 changes are encoded 20
// times, not once per reader, and every reader gets every change.
func TestEventsEncodedOnce(t *testing.T) {
	reg := registry.New(1)
	s := &Server{Token: testToken, Registry: reg}
	base := startServer(t, s)
	const readers, changes = 50, 20
	var ms [readers]mirror
	brs := make([]*bufio.Reader, readers)
	for i := range brs {
		brs[i] = openEvents(t, base)
		ms[i].follow(t, brs[i], reg.Snapshot().Serial())
	}
	before := s.changes.encoded.Load()
	addHosts(t, reg, 0, changes)
	want := reg.Snapshot().Serial()
	var wg sync.WaitGroup
	for i := range brs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ms[i].follow(t, brs[i], want)
			ms[i].check(t, reg.Snapshot())
		}()
	}
	wg.Wait()
	if n := s.changes.encoded.Load() - before; n != changes {
		t.Errorf("%d readers, %d changes: %d encodings, want %d", readers, changes, n, changes)
	}
}

// TestStreamDropsStalledReader: a client that opens a stream and never
// reads is closed once a write has waited StreamWriteTimeout, and its
// slot is free again (the stream used to clear its write deadline and
// keep the connection, its goroutine and its buffers for ever).
func TestStreamDropsStalledReader(t *testing.T) {
	reg := registry.New(1)
	s := &Server{Token: testToken, Registry: reg, StreamWriteTimeout: 300 * time.Millisecond}
	base := startServer(t, s)
	for _, path := range []string{"/api/events", "/events"} {
		c, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.(*net.TCPConn).SetReadBuffer(4096)
		fmt.Fprintf(c, "GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n", path)
		waitFor(t, func() bool { return s.Streams() == 1 }, "the stream to open")
		// Changes with large rows fill the socket buffers on both sides.
		txt := registry.TXT{"pad=" + strings.Repeat("x", 200)}
		for i := 0; s.Streams() > 0; i++ {
			if i == 20000 {
				t.Fatalf("%s: the stream is still open after %d changes nobody read", path, i)
			}
			// 50 instances at most: each of the page's events draws them all.
			inst := registry.Instance{ID: "pad" + strconv.Itoa(i%50), Service: "echo", Proto: "tcp", Host: "h", Port: uint16(1 + i%60000), TXT: txt}
			if _, err := reg.Register(inst, nil); err != nil {
				t.Fatal(err)
			}
			if i%50 == 0 {
				time.Sleep(20 * time.Millisecond)
			}
		}
		c.Close()
	}
}

// waitFor polls cond for up to 10 s.
func waitFor(t *testing.T, cond func() bool, what string) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestFeedLag: a reader too many bytes behind the newest event is told
// so; one a burst of small events behind is not.
func TestFeedLag(t *testing.T) {
	reg := registry.New(1)
	var f feed
	stop := make(chan struct{})
	first := f.join(reg, func(*registry.Snapshot, <-chan struct{}) { <-stop })
	defer close(stop)
	defer f.leave()
	for i := range 2000 {
		f.publish(f.stop, &feedEvent{serial: uint32(i + 2), prev: uint32(i + 1), data: make([]byte, 300)})
	}
	if f.behind(first) {
		t.Errorf("a reader 2,000 small events behind is behind")
	}
	f.publish(f.stop, &feedEvent{serial: 5000, prev: 2001, data: make([]byte, maxLagBytes)})
	if !f.behind(first) {
		t.Errorf("a reader more than %d bytes behind is not behind", maxLagBytes)
	}
	if f.behind(f.newest.Load()) {
		t.Errorf("the newest event is behind")
	}
}

// BenchmarkStreamFanout is the attack run's measure: in a directory of
// 5,000 instances, one health change at a time, each sent to 200 readers
// of /api/events over loopback TCP before the next; cpu-ms/op is the
// process's CPU time per change, the server's and its readers'. (The
// run measured 25 CPU-seconds for 20 changes, when each sent the whole
// directory to every reader.)
func BenchmarkStreamFanout(b *testing.B) {
	const readers = 200
	reg := registry.New(1)
	if _, err := reg.Update(func(tx *registry.Tx) error {
		for i := range 5000 {
			if _, err := tx.PutInstance(registry.Instance{ID: "i" + strconv.Itoa(i), Service: "echo", Proto: "tcp", Host: "box", Port: uint16(1000 + i)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
	s := &Server{Registry: reg, MaxStreamsPerClient: readers, MaxConnsPerClient: 2 * readers}
	base := startServer(b, s)
	var last [readers]atomic.Uint32 // each reader's last id
	for i := range readers {
		resp, err := http.Get(base + "/api/events")
		if err != nil {
			b.Fatal(err)
		}
		b.Cleanup(func() { resp.Body.Close() })
		go func() {
			br := bufio.NewReader(resp.Body)
			for start := true; ; {
				line, err := br.ReadSlice('\n')
				if err != nil && err != bufio.ErrBufferFull {
					return
				}
				at := start
				start = err == nil // a long line comes in pieces
				if id, ok := strings.CutPrefix(string(line), "id: "); ok && at {
					n, _ := strconv.Atoi(strings.TrimSpace(id))
					last[i].Store(uint32(n))
				}
			}
		}()
	}
	all := func(serial uint32) {
		deadline := time.Now().Add(time.Minute)
		for i := range last {
			for last[i].Load() != serial {
				if time.Now().After(deadline) {
					b.Fatalf("reader %d at %d, want %d", i, last[i].Load(), serial)
				}
				time.Sleep(time.Millisecond)
			}
		}
	}
	all(reg.Snapshot().Serial()) // every snapshot is in
	i := 0
	var serial uint32
	cpu0 := cpuTime()
	for b.Loop() {
		i++
		h := registry.Passing
		if i%2 == 1 {
			h = registry.Critical
		}
		if err := reg.SetHealth("i"+strconv.Itoa(i%5000), h); err != nil {
			b.Fatal(err)
		}
		serial = reg.Snapshot().Serial()
		all(serial)
	}
	b.ReportMetric(float64(cpuTime()-cpu0)/float64(time.Millisecond)/float64(b.N), "cpu-ms/op")
}
