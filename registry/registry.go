// Package registry is the directory: service instances and host addresses in
// an in-memory database (go-memdb), IANA's well-known ports, and the zone's
// serial. It knows names relative to the zone and nothing of DNS wire formats.
package registry

import (
	"errors"
	"fmt"
	"iter"
	"log/slog"
	"net/netip"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/hashicorp/go-memdb"
)

// DefaultZone is the zone the directory's names live in when none is
// configured: the server answers for it and clients look names up in it.
const DefaultZone = "svc.internal."

// Limits on what may be registered.
const (
	DefaultTTL  = 10     // seconds, for instances and hosts that set none
	MaxTTL      = 604800 // one week, RFC 8767's cap on how long to hold data
	MaxTXT      = 64     // strings in an instance's TXT record
	MaxSubtypes = 16     // subtypes per instance
)

// A ServiceType is one _service._proto pair with how many instances it has.
type ServiceType struct {
	Proto     string
	Service   string
	Instances int
	Healthy   int
}

type zoneState struct {
	ID     string
	Serial uint32
}

// ErrInvalid is wrapped by every validation error; the error's text names
// the field.
var ErrInvalid = errors.New("invalid")

// ErrNotFound is returned when an update names an instance or host that
// does not exist.
var ErrNotFound = errors.New("not found")

// A FieldError says which field of a registration was rejected and why.
type FieldError struct {
	Field  string
	Value  string
	Reason string
}

func (e *FieldError) Error() string {
	return fmt.Sprintf("invalid %s %q: %s", e.Field, e.Value, e.Reason)
}

func (e *FieldError) Unwrap() error { return ErrInvalid }

// Registry is the directory. Its methods are safe for concurrent use:
// writers are serialised, readers work on immutable snapshots.
//
// A registry made by Open keeps a journal: every Update is on disk before it
// returns and before any Snapshot shows it (see journal.go). One made by New
// lives in memory only.
type Registry struct {
	// Catalog resolves well-known names and ports; nil means DefaultCatalog.
	Catalog *Catalog

	// MaxInstances caps the instances Tx.Register adds (limit.go): past
	// it, a registration fails with a *LimitError. 0 means no cap. Set it
	// before the first Update.
	MaxInstances int

	db  *memdb.MemDB
	log *slog.Logger
	j   *journal // nil for a registry made by New

	// snap is the newest published snapshot: durable when j is set.
	snap atomic.Pointer[Snapshot]

	// writeMu serialises writers from the start of their memdb transaction
	// to the append of their journal record, so that the journal's order is
	// memdb's commit order. It guards the fields below.
	writeMu     sync.Mutex
	hist        []ChangeSet // oldest first
	histChanges int         // sum of len(Changes) over hist
	maxSets     int
	maxChanges  int
	closed      bool
	instances   int // in db: what the newest snapshot's NumInstances will say

	used marks // signed requests acted on (once.go)

	rel releaser // memory given back after a burst of writes (release.go)
}

// ErrClosed is returned by Update after Close.
var ErrClosed = errors.New("registry: closed")

// New returns an empty in-memory registry whose zone serial is serial.
func New(serial uint32) *Registry {
	r := newRegistry(Options{})
	txn := r.db.Txn(true)
	if err := txn.Insert(tableZone, &zoneState{ID: zoneRow, Serial: serial}); err != nil {
		panic(err)
	}
	if err := raiseFloors(txn, serial, false); err != nil {
		panic(err)
	}
	txn.Commit()
	r.snap.Store(r.newSnapshot())
	return r
}

func newRegistry(opts Options) *Registry {
	db, err := memdb.NewMemDB(schema())
	if err != nil {
		// The schema is a constant of this package and is tested.
		panic(err)
	}
	// Readers learn of changes from Snapshot.changed, never from memdb's
	// watch channels. A snapshot of the database is a MemDB that does not
	// track mutations: built with upstream's go-immutable-radix (a program
	// importing this package), a commit then skips collecting and closing
	// the channel of every node it replaced, and a transaction of more
	// than 8,192 modified nodes its "slow notify", a walk of the whole old
	// and new tree of every index (seconds per commit at a million
	// instances). annuaire's own build has no channels to close at all
	// (third_party/go-immutable-radix/ANNUAIRE.md).
	db = db.Snapshot()
	r := &Registry{Catalog: DefaultCatalog(), db: db, log: opts.Logger, rel: newReleaser()}
	if r.log == nil {
		r.log = slog.Default()
	}
	r.maxSets, r.maxChanges = opts.HistorySize, opts.HistoryChanges
	if r.maxSets == 0 {
		r.maxSets = DefaultHistorySize
	}
	if r.maxChanges == 0 {
		r.maxChanges = DefaultHistoryChanges
	}
	return r
}

// Snapshot returns a consistent read-only view of the registry. It never
// changes; Changed tells when a newer one exists. It only shows updates
// that are durable.
func (r *Registry) Snapshot() *Snapshot { return r.snap.Load() }

// Update runs fn in one write transaction. If fn returns an error or writes
// nothing, nothing changes. Otherwise every row fn wrote becomes visible at
// once, with the zone serial bumped by one, and the new serial is returned.
//
// With a journal, Update returns only once the change is on disk. If the
// disk is full, an update returns an error wrapping ErrFull and changes
// nothing, until writes succeed again; if an fdatasync failed, every
// update returns that error until a restart. Either way an update that
// only changes health (what SetHealth does) is published from memory at
// once, so that DNS follows checks whatever the disk can do (see
// journal). fn may then run a second time: when the write of its change
// failed for everyone, or when the journal must first write what it
// served from memory.
func (r *Registry) Update(fn func(tx *Tx) error) (uint32, error) {
	health := false
	for {
		serial, next, err := r.update(fn, health)
		if next == done {
			return serial, err
		}
		health = next == retryHealth
	}
}

// What Update does after one try.
type retry int

const (
	done        retry = iota
	retryHealth       // the write of a health change failed: again, from memory
	retryFrames       // the journal wrote what it served from memory: again, to the journal
)

// update is one try of Update; dropped says it follows a retryHealth.
func (r *Registry) update(fn func(tx *Tx) error, dropped bool) (serial uint32, next retry, err error) {
	r.writeMu.Lock()
	if dropped {
		r.j.healthRetried()
	}
	if r.closed {
		r.writeMu.Unlock()
		return 0, done, ErrClosed
	}
	tx := newTx(r.db, r.Catalog)
	tx.marks = &r.used
	tx.instances, tx.maxInstances = r.instances, r.MaxInstances
	txn := tx.txn
	serial, err = r.updateLocked(txn, tx, fn)
	if err == nil && len(tx.changes) == 0 && len(tx.newMarks) > 0 {
		txn.Abort()
		return serial, done, r.markLocked(serial, tx.newMarks)
	}
	if err != nil || len(tx.changes) == 0 {
		txn.Abort()
		var t *ticket
		if r.j != nil {
			t = r.j.lastTicket()
		}
		r.writeMu.Unlock()
		if err == nil && t != nil {
			// fn may have read rows that are not durable yet: answer only
			// once they are.
			err = r.j.wait(t)
		}
		return serial, done, err
	}
	cs := ChangeSet{Prev: tx.Serial(), Serial: serial, Changes: tx.changes}
	memory := false
	if r.j != nil {
		var full error
		memory, full = r.j.serveFromMemory(serial)
		if (memory || full != nil) && !healthOnly(cs) {
			// Not only health: write what was served from memory first,
			// then run fn again, on a journal that takes frames.
			txn.Abort()
			err := r.j.resume()
			r.writeMu.Unlock()
			if err != nil {
				return 0, done, err
			}
			return 0, retryFrames, nil
		}
		if full != nil {
			txn.Abort()
			r.writeMu.Unlock()
			return 0, done, full
		}
	}
	var rec []byte
	if r.j != nil && !memory {
		if rec, err = encodeRecord(journalRecord{ChangeSet: cs, Used: tx.newMarks}); err != nil {
			txn.Abort()
			r.writeMu.Unlock()
			return 0, done, err
		}
	}
	if err := tx.stamp(cs); err != nil {
		txn.Abort()
		r.writeMu.Unlock()
		return 0, done, err
	}
	if err := txn.Insert(tableZone, &zoneState{ID: zoneRow, Serial: serial}); err != nil {
		txn.Abort()
		r.writeMu.Unlock()
		return 0, done, fmt.Errorf("registry: bump serial: %w", err)
	}
	txn.Commit()
	r.instances = tx.instances + tx.added
	r.committed()
	r.remember(cs)
	r.used.add(time.Now().Unix(), tx.newMarks...)
	snap := r.newSnapshot()
	if r.j == nil || memory {
		r.publishLocked(snap)
		r.writeMu.Unlock()
		return serial, done, nil
	}
	health := healthOnly(cs)
	t := r.j.append(rec, snap, health)
	r.writeMu.Unlock()
	if err := r.j.wait(t); err != nil {
		// A write that failed dropped this change with every other not
		// yet durable; a health change is retried, from memory.
		if health {
			return 0, retryHealth, err
		}
		return 0, done, err
	}
	return serial, done, nil
}

// markLocked is the end of an update that changes nothing but marks
// requests as used: a record that keeps the serial s, the one committed.
// It is called with writeMu held, and releases it.
func (r *Registry) markLocked(s uint32, add []Mark) error {
	r.used.add(time.Now().Unix(), add...)
	if r.j == nil {
		r.writeMu.Unlock()
		return nil
	}
	if err := r.j.writable(); err != nil {
		r.writeMu.Unlock()
		return err
	}
	rec, err := encodeRecord(journalRecord{ChangeSet: ChangeSet{Prev: s, Serial: s}, Used: add})
	if err != nil {
		r.writeMu.Unlock()
		return err
	}
	t := r.j.append(rec, nil, false)
	r.writeMu.Unlock()
	return r.j.wait(t)
}

// healthOnly reports whether cs only changes instances' health: what a
// check observes, which must reach DNS whatever the disk can do.
func healthOnly(cs ChangeSet) bool {
	for _, c := range cs.Changes {
		a, ok := c.Row.(*Instance)
		b, old := c.Old.(*Instance)
		if c.Delete || !ok || !old {
			return false
		}
		if a.ID != b.ID || a.Service != b.Service || a.Proto != b.Proto || a.Label != b.Label || a.Host != b.Host ||
			a.Port != b.Port || a.Priority != b.Priority || a.Weight != b.Weight || a.TTL != b.TTL ||
			!slices.Equal(a.TXT, b.TXT) || !slices.Equal(a.Subtypes, b.Subtypes) || (a.Check == nil) != (b.Check == nil) || a.Check != nil && *a.Check != *b.Check {
			return false
		}
	}
	return len(cs.Changes) > 0
}

// updateLocked runs fn and returns the serial the update will have.
func (r *Registry) updateLocked(txn *memdb.Txn, tx *Tx, fn func(*Tx) error) (uint32, error) {
	if err := fn(tx); err != nil {
		return 0, err
	}
	if err := tx.flushTypes(); err != nil {
		return 0, err
	}
	serial := tx.Serial()
	if len(tx.changes) == 0 {
		return serial, nil
	}
	return nextSerial(serial, 1), nil
}

// nextSerial adds n to a serial in RFC 1982 arithmetic, skipping 0, which
// some secondaries treat as "no serial".
func nextSerial(s uint32, n uint32) uint32 {
	if s+n < s || s+n == 0 {
		return s + n + 1
	}
	return s + n
}

// SerialLess reports whether serial a comes before b in RFC 1982
// arithmetic: the journal's order, what a secondary holding a asks to
// move to b by IXFR, and what an UPDATE's SOA must be above to matter
// (RFC 2136 section 3.4.2.2).
func SerialLess(a, b uint32) bool { return a != b && int32(b-a) > 0 }

// newSnapshot returns a snapshot of the registry as committed now, with
// the history up to it. Called with writeMu, or before any writer.
func (r *Registry) newSnapshot() *Snapshot {
	return &Snapshot{reader: reader{txn: r.db.Txn(false), schema: r.db.DBSchema()}, db: r.db.Snapshot(), hist: r.hist,
		instances: r.instances, changed: make(chan struct{})}
}

// rollback makes the registry, with writeMu held, what was last published:
// the updates committed since are dropped, their frames not written.
func (r *Registry) rollback() {
	pub := r.snap.Load()
	r.db = pub.db.Snapshot()
	r.instances = pub.instances
	r.hist, r.histChanges = pub.hist, 0
	for _, cs := range r.hist {
		r.histChanges += len(cs.Changes)
	}
}

// publishLocked is publish for a writer that holds writeMu: with a
// journal, publish is serialised by the journal's mutex.
func (r *Registry) publishLocked(snap *Snapshot) {
	if r.j == nil {
		r.publish(snap)
		return
	}
	r.j.mu.Lock()
	r.publish(snap)
	r.j.mu.Unlock()
}

// publish makes snap the snapshot readers get and wakes those waiting on
// the previous one. Callers serialise it: writeMu without a journal, the
// journal's mutex with one.
func (r *Registry) publish(snap *Snapshot) {
	old := r.snap.Swap(snap)
	if old != nil && old.changed != nil {
		close(old.changed)
	}
}

// Close flushes and closes the journal and releases the data directory.
// Later Updates return ErrClosed. Close is safe to call twice; on a
// registry made by New it only stops writes.
func (r *Registry) Close() error {
	r.writeMu.Lock()
	if r.closed {
		r.writeMu.Unlock()
		return nil
	}
	r.closed = true
	r.stopRelease()
	if r.j != nil {
		r.j.resume() // a last try to write what was served from memory
	}
	r.writeMu.Unlock()
	if r.j == nil {
		return nil
	}
	return r.j.close()
}

// Register adds or replaces one instance as given, and its host when host
// is not nil, in one Update, and returns the instance's ID: for programs
// that build their rows themselves. What a user asks for goes through
// Tx.Register, which gives a Registration the registry's defaults.
func (r *Registry) Register(inst Instance, host *Host) (string, error) {
	var id string
	_, err := r.Update(func(tx *Tx) error {
		if host != nil {
			if err := tx.PutHost(*host); err != nil {
				return err
			}
		}
		var err error
		id, err = tx.PutInstance(inst)
		return err
	})
	return id, err
}

// Deregister removes the instance with the given ID.
func (r *Registry) Deregister(id string) error {
	_, err := r.Update(func(tx *Tx) error { return tx.DeleteInstance(id) })
	return err
}

// SetHealth records an instance's health; DNS answers follow at once.
func (r *Registry) SetHealth(id string, h Health) error {
	_, err := r.Update(func(tx *Tx) error { return tx.SetHealth(id, h) })
	return err
}

// A Snapshot is a consistent view of the registry as of one serial. It
// never changes: Changed tells when a newer one exists.
type Snapshot struct {
	reader
	db      *memdb.MemDB  // the database as of txn, for Registry.rollback
	changed chan struct{} // closed when the next snapshot is published
	hist    []ChangeSet   // the registry's history up to this snapshot
	// instances counts the rows of the instances table.
	instances int
}

// A reader reads rows through one memdb transaction: the read methods that
// a Snapshot and a Tx share. A Snapshot's transaction is a read
// transaction, and what it reads never changes; a Tx's is the write
// transaction, and what it reads changes with the Tx's own writes.
type reader struct {
	txn    *memdb.Txn
	schema *memdb.DBSchema // the indexes reads go through (reads.go)
	tx     *Tx             // set in a Tx's: its pending type counts, the rows it wrote
	rec    *Reads          // set in a recording view (reads.go)
}

// Serial is the zone's SOA serial.
func (s *reader) Serial() uint32 {
	raw, err := s.txn.First(tableZone, indexID, zoneRow)
	if err != nil || raw == nil {
		return 0
	}
	return raw.(*zoneState).Serial
}

// Changed is closed when the registry moves past this snapshot.
func (s *Snapshot) Changed() <-chan struct{} {
	if s.changed != nil {
		return s.changed
	}
	// Tx.Base's: the Tx moves past it. A closed channel makes callers take
	// a new snapshot, which is always safe.
	closed := make(chan struct{})
	close(closed)
	return closed
}

// Types yields every service type with at least one instance.
func (s *reader) Types() iter.Seq[ServiceType] {
	return func(yield func(ServiceType) bool) {
		s.flushTypes()
		for t := range rows[ServiceType](s, tableTypes, indexID+"_prefix") {
			if !yield(*t) {
				return
			}
		}
	}
}

// Type returns the service type _service._proto, if it has instances.
func (s *reader) Type(proto, service string) (ServiceType, bool) {
	s.flushTypes()
	raw := s.first(tableTypes, indexID, proto, service)
	if raw == nil {
		return ServiceType{}, false
	}
	return *raw.(*ServiceType), true
}

// HasProto reports whether any service type uses proto: whether _proto
// exists in the zone as an empty non-terminal.
func (s *reader) HasProto(proto string) bool {
	s.flushTypes()
	// (proto, "") is the prefix of whole proto field: "tcp" alone would
	// also find a "tcpx".
	return s.first(tableTypes, indexID+"_prefix", proto, "") != nil
}

// Instances yields every instance of _service._proto, healthy or not.
func (s *reader) Instances(proto, service string) iter.Seq[*Instance] {
	return rows[Instance](s, tableInstances, indexLabel+"_prefix", proto, service)
}

// Subtype yields the instances of _service._proto that have the subtype
// sub (RFC 6763 section 7.1), healthy or not, in label order.
func (s *reader) Subtype(proto, service, sub string) iter.Seq[*Instance] {
	return rows[Instance](s, tableInstances, indexSubtype+"_prefix", proto, service, sub)
}

// HasSubtypes reports whether some instance of _service._proto has a
// subtype: whether _sub._service._proto exists, as an empty non-terminal.
func (s *reader) HasSubtypes(proto, service string) bool {
	for range rows[Instance](s, tableInstances, indexSubtype+"_prefix", proto, service) {
		return true
	}
	return false
}

// All yields every instance, ordered by ID.
func (s *reader) All() iter.Seq[*Instance] {
	return rows[Instance](s, tableInstances, indexID+"_prefix", "")
}

// OnHost yields the instances whose target is host, ordered by ID. It
// reads every instance: no index by host is kept, since an index entry per
// instance costs more memory than this rarely used question is worth
// (collecting automatic hosts uses a reference count instead).
func (s *reader) OnHost(host string) iter.Seq[*Instance] {
	return func(yield func(*Instance) bool) {
		for inst := range s.All() {
			if SameName(inst.Host, host) && !yield(inst) {
				return
			}
		}
	}
}

// Instance returns the instance with the given ID.
func (s *reader) Instance(id string) (*Instance, bool) {
	if s.tx != nil {
		s.note(tableInstances, indexID, []any{id})
		return s.tx.instance(id)
	}
	raw := s.first(tableInstances, indexID, id)
	if raw == nil {
		return nil, false
	}
	return raw.(*Instance), true
}

// ByLabel returns the DNS-SD instance label._service._proto.
func (s *reader) ByLabel(proto, service, label string) (*Instance, bool) {
	if s.tx != nil {
		s.note(tableInstances, indexLabel, []any{proto, service, label})
		return s.tx.byLabel(proto, service, label)
	}
	raw := s.first(tableInstances, indexLabel, proto, service, label)
	if raw == nil {
		return nil, false
	}
	return raw.(*Instance), true
}

// Host returns the host with the given name, relative to the zone.
func (s *reader) Host(name string) (*Host, bool) {
	raw := s.first(tableHosts, indexID, name)
	if raw == nil {
		return nil, false
	}
	return raw.(*Host), true
}

// HostRefs returns how many instances target the host name, whether or
// not the host exists.
func (s *Snapshot) HostRefs(name string) int {
	h, _ := s.Host(name)
	n := autoRef(h)
	if raw := s.first(tableHostRefs, indexID, FoldName(name)); raw != nil {
		n += raw.(*hostRef).N
	}
	return n
}

// InstancesAfter yields the instances whose ID sorts after id, ordered by
// ID as All orders them, compared without case: a page of a listing
// resumes there.
func (s *Snapshot) InstancesAfter(id string) iter.Seq[*Instance] {
	return func(yield func(*Instance) bool) {
		s.note(tableInstances, indexID+"_prefix", []any{""})
		it, err := s.txn.LowerBound(tableInstances, indexID, id)
		if err != nil {
			return
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			inst := raw.(*Instance)
			if SameName(inst.ID, id) {
				continue
			}
			if !yield(inst) {
				return
			}
		}
	}
}

// Hosts yields every host, ordered by name.
func (s *reader) Hosts() iter.Seq[*Host] {
	return rows[Host](s, tableHosts, indexID+"_prefix", "")
}

// HostsByAddr yields the hosts that have addr, for reverse (PTR) lookups.
func (s *reader) HostsByAddr(addr netip.Addr) iter.Seq[*Host] {
	return rows[Host](s, tableHosts, indexAddr, addrNet(addr))
}

// HasHostBelow reports whether some host name ends in "."+name: whether name
// is an empty non-terminal because of hosts.
func (s *reader) HasHostBelow(name string) bool {
	for h := range rows[Host](s, tableHosts, indexRName+"_prefix", name) {
		if !SameName(h.Name, name) { // the prefix also finds name itself
			return true
		}
	}
	return false
}

// first returns the first row of table that index finds for args, or nil.
// It and rows are how a Snapshot reads rows: each notes its read in a
// recording view (reads.go).
func (s *reader) first(table, index string, args ...any) any {
	s.note(table, index, args)
	raw, err := s.txn.First(table, index, args...)
	if err != nil {
		return nil
	}
	return raw
}

// rows yields the rows of an index query, each of the type T that the
// table holds.
func rows[T any](s *reader, table, index string, args ...any) iter.Seq[*T] {
	return func(yield func(*T) bool) {
		s.note(table, index, args)
		for t := range txnRows[T](s.txn, table, index, args...) {
			if !yield(t) {
				return
			}
		}
	}
}

// txnRows is rows on a transaction, unrecorded: Tx's reads of its base.
func txnRows[T any](txn *memdb.Txn, table, index string, args ...any) iter.Seq[*T] {
	return func(yield func(*T) bool) {
		it, err := txn.Get(table, index, args...)
		if err != nil {
			return
		}
		for raw := it.Next(); raw != nil; raw = it.Next() {
			if !yield(raw.(*T)) {
				return
			}
		}
	}
}

// A Tx is a write transaction, passed to the function given to Update. Its
// reads see its own writes; Base is the registry as it found it.
type Tx struct {
	reader
	changes []Change
	catalog *Catalog // for Register's defaults

	// The instances base holds, those this Tx added (removed ones count
	// -1), and the cap on their sum (limit.go).
	instances, added, maxInstances int

	// Instance and ByLabel, which every PutInstance asks, answer from the
	// instances this Tx wrote and, for the others, from base, the registry
	// as the Tx found it: never from the write transaction. memdb clones
	// an index for each read in a write transaction, and the clone drops
	// the transaction's record of the radix nodes it has already copied,
	// so a read between two inserts made the next insert copy its whole
	// path in every index again: most of the time, and 5 KB of garbage per
	// instance, of a bulk Update.
	base   *memdb.Txn
	wrote  map[string]*Instance   // by lowercased ID; nil once deleted
	labels map[labelKey]*Instance // the labels rows in wrote hold

	// types holds the type rows this Tx changed and has not written yet:
	// a bulk Update of n instances of one type writes its row once, not n
	// times (each write copies the row and its path in the radix tree).
	// They are written before anything reads the types table and before
	// the commit (Open's restore, which commits in batches, writes them
	// once, at the end).
	types    map[typeKey]*pendingType
	hostRefs map[string]*pendingRef // the same for host reference counts
	owners   map[string]*pendingRef // the same for owners' instance counts (owner.go)
	typesErr error

	// The registry's marks of single use, and those this Tx adds (once.go).
	marks    *marks
	newMarks []Mark

	// Used by Open only: called before each replayed row, to commit in batches.
	onReplay func()
	replayed int
}

type typeKey struct{ proto, service string }

// A labelKey is what the label index compares: each field folded.
type labelKey struct{ proto, service, label string }

func labelKeyOf(proto, service, label string) labelKey {
	return labelKey{FoldName(proto), FoldName(service), FoldName(label)}
}

type pendingType struct {
	ServiceType
	stored bool // a row for the type is in the table
}

type pendingRef struct {
	n      int
	stored bool
}

// A hostRef counts the instances that target a host name, whether or not
// the host exists: collectHost needs the count, and a row per host costs
// less than an index entry per instance.
//
// N is the count less autoRef of the host as it is: an automatic host
// counts its first instance itself, and the one a registration creates,
// with one instance, has no row. A row and its index entry were about 200
// of the 1,400 bytes an API registration cost, and a path copied in one
// more index per registration (BENCHMARKS.md, "Registry cost per
// instance"). So a change to a host that changes its autoRef loads its
// count first (hostChanging), and flushTypes stores it against the new.
type hostRef struct {
	Name string // lowercased, as Instance.Host
	N    int
}

// autoRef is the part of a host's reference count that its row stands
// for: 1 for an automatic host, 0 for another or none (nil).
func autoRef(h *Host) int {
	if h != nil && h.Auto {
		return 1
	}
	return 0
}

// hostChanging is called before a host row goes from old to h (nil:
// none): when that changes its autoRef, it loads the host's reference
// count, which flushTypes then stores against the new row.
func (tx *Tx) hostChanging(name string, old, h *Host) error {
	if autoRef(old) == autoRef(h) {
		return nil
	}
	_, err := tx.hostRef(FoldName(name))
	return err
}

// hostAutoRef is autoRef of the host named name (lowercased) as this Tx
// has it now.
func (tx *Tx) hostAutoRef(name string) (int, error) {
	raw, err := tx.txn.First(tableHosts, indexID, name)
	if err != nil {
		return 0, fmt.Errorf("registry: host %s: %w", name, err)
	}
	h, _ := raw.(*Host)
	return autoRef(h), nil
}

func newTx(db *memdb.MemDB, cat *Catalog) *Tx {
	tx := &Tx{catalog: cat}
	tx.reader.tx = tx
	tx.reader.schema = db.DBSchema()
	tx.begin(db)
	return tx
}

// Base returns the registry as the Tx found it, without its writes: what
// RFC 2136's prerequisites are checked against, before any update. It has
// no history, and its Changed channel is closed.
func (tx *Tx) Base() *Snapshot {
	return &Snapshot{reader: reader{txn: tx.base, schema: tx.schema}, instances: tx.instances}
}

// begin starts the Tx's memdb write transaction; Open calls it again after
// committing each batch of a restore.
func (tx *Tx) begin(db *memdb.MemDB) {
	tx.txn = db.Txn(true)
	tx.base = db.Txn(false) // after Txn(true): the writer lock is held
	clear(tx.wrote)
	clear(tx.labels)
}

// noteWrite records the row now under id: inst, or nil for a deleted one.
func (tx *Tx) noteWrite(id string, inst *Instance) {
	if tx.wrote == nil {
		tx.wrote = make(map[string]*Instance)
		tx.labels = make(map[labelKey]*Instance)
	}
	tx.wrote[FoldName(id)] = inst
}

// instance is Instance in a Tx (see Tx.base).
func (tx *Tx) instance(id string) (*Instance, bool) {
	if inst, ok := tx.wrote[FoldName(id)]; ok {
		return inst, inst != nil
	}
	raw, err := tx.base.First(tableInstances, indexID, id)
	if err != nil || raw == nil {
		return nil, false
	}
	return raw.(*Instance), true
}

// byLabel is ByLabel in a Tx (see Tx.base): the row this Tx gave the label,
// else the first row of base that has it and that this Tx did not change.
func (tx *Tx) byLabel(proto, service, label string) (*Instance, bool) {
	if inst, ok := tx.labels[labelKeyOf(proto, service, label)]; ok {
		return inst, true
	}
	for inst := range txnRows[Instance](tx.base, tableInstances, indexLabel, proto, service, label) {
		if _, changed := tx.wrote[FoldName(inst.ID)]; !changed {
			return inst, true
		}
	}
	return nil, false
}

func (s *reader) flushTypes() {
	if s.tx != nil && len(s.tx.types) > 0 {
		s.tx.flushTypes() // an error is kept for Update
	}
}

// flushTypes writes the pending type rows. It returns the first error met
// by this or an earlier flush.
func (tx *Tx) flushTypes() error {
	for _, p := range tx.types {
		t := p.ServiceType
		if t.Instances <= 0 {
			if p.stored {
				if err := tx.txn.Delete(tableTypes, &t); err != nil {
					tx.typesErr = errors.Join(tx.typesErr, fmt.Errorf("registry: delete type _%s._%s: %w", t.Service, t.Proto, err))
				}
			}
			continue
		}
		if err := tx.txn.Insert(tableTypes, &t); err != nil {
			tx.typesErr = errors.Join(tx.typesErr, fmt.Errorf("registry: insert type _%s._%s: %w", t.Service, t.Proto, err))
		}
	}
	clear(tx.types)
	for name, p := range tx.hostRefs {
		auto, err := tx.hostAutoRef(name)
		if err != nil {
			tx.typesErr = errors.Join(tx.typesErr, err)
			continue
		}
		ref := hostRef{Name: name, N: p.n - auto}
		if ref.N == 0 {
			if p.stored {
				if err := tx.txn.Delete(tableHostRefs, &ref); err != nil {
					tx.typesErr = errors.Join(tx.typesErr, fmt.Errorf("registry: delete references to host %s: %w", name, err))
				}
			}
			continue
		}
		if err := tx.txn.Insert(tableHostRefs, &ref); err != nil {
			tx.typesErr = errors.Join(tx.typesErr, fmt.Errorf("registry: count references to host %s: %w", name, err))
		}
	}
	clear(tx.hostRefs)
	tx.flushOwners()
	return tx.typesErr
}

// PutInstance validates inst, fills in its defaults and inserts or replaces
// it, returning its ID. Defaults: ID "<service>-<proto>-<host>-<port>",
// Label "<host>-<port>", TTL DefaultTTL, Health passing.
func (tx *Tx) PutInstance(inst Instance) (string, error) {
	if err := fillInstance(&inst); err != nil {
		return "", err
	}
	return tx.putFilled(inst)
}

// putFilled is PutInstance for a row fillInstance has filled in: filling
// again would find an ID, and not know it for the one it made (idKeyed).
func (tx *Tx) putFilled(inst Instance) (string, error) {
	if other, ok := tx.ByLabel(inst.Proto, inst.Service, inst.Label); ok && !SameName(other.ID, inst.ID) {
		return "", &FieldError{"instance", inst.Label, "already used by " + other.ID}
	}
	old, replacing := tx.Instance(inst.ID)
	if replacing {
		if err := tx.removeInstance(old); err != nil {
			return "", err
		}
	}
	if err := tx.insertInstance(&inst); err != nil {
		return "", err
	}
	if replacing && !SameName(old.Host, inst.Host) {
		if err := tx.collectHost(old.Host); err != nil {
			return "", err
		}
	}
	ch := Change{Row: &inst}
	if replacing {
		ch.Old = old
	}
	tx.changes = append(tx.changes, ch)
	return inst.ID, nil
}

// DeleteInstance removes an instance, and its host if the registration
// created it and nothing else points at it.
func (tx *Tx) DeleteInstance(id string) error {
	old, ok := tx.Instance(id)
	if !ok {
		return fmt.Errorf("registry: instance %q: %w", id, ErrNotFound)
	}
	if err := tx.removeInstance(old); err != nil {
		return err
	}
	tx.changes = append(tx.changes, Change{Delete: true, Row: old, Old: old})
	return tx.collectHost(old.Host)
}

// SetHealth changes an instance's health; setting the health it already
// has writes nothing.
func (tx *Tx) SetHealth(id string, h Health) error {
	old, ok := tx.Instance(id)
	if !ok {
		return fmt.Errorf("registry: instance %q: %w", id, ErrNotFound)
	}
	if old.Health == h {
		return nil
	}
	inst := *old // never modify a row after inserting it: copy, change, insert
	inst.Health = h
	_, err := tx.PutInstance(inst)
	return err
}

// PutHost validates h and inserts or replaces it; putting a host as it
// already is writes nothing (every API registration with an address puts
// its host again; RFC 2136 section 3.4.2.2 ignores a duplicate record too).
func (tx *Tx) PutHost(h Host) error {
	if err := fillHost(&h); err != nil {
		return err
	}
	// Written rows only: a journal from before the bound still opens.
	if len(h.Addrs) > MaxAddresses {
		return &FieldError{"addresses", strconv.Itoa(len(h.Addrs)) + " addresses", "a host has at most " + strconv.Itoa(MaxAddresses)}
	}
	old, _ := tx.Host(h.Name)
	if old != nil && old.Name == h.Name && old.TTL == h.TTL && old.Auto == h.Auto && old.Owner == h.Owner && slices.Equal(old.Addrs, h.Addrs) {
		return nil
	}
	if err := tx.hostChanging(h.Name, old, &h); err != nil {
		return err
	}
	if err := tx.txn.Insert(tableHosts, &h); err != nil {
		return fmt.Errorf("registry: insert host %s: %w", h.Name, err)
	}
	ch := Change{Row: &h}
	if old != nil {
		ch.Old = old // not a nil *Host in the interface
	}
	tx.changes = append(tx.changes, ch)
	return nil
}

// DeleteHost removes a host. SRV records that target it stay, as RFC 2136
// would leave them: the host may come back.
func (tx *Tx) DeleteHost(name string) error {
	old, ok := tx.Host(name)
	if !ok {
		return fmt.Errorf("registry: host %q: %w", name, ErrNotFound)
	}
	if err := tx.hostChanging(name, old, nil); err != nil {
		return err
	}
	if err := tx.txn.Delete(tableHosts, old); err != nil {
		return fmt.Errorf("registry: delete host %s: %w", name, err)
	}
	tx.changes = append(tx.changes, Change{Delete: true, Row: old, Old: old})
	return nil
}

func (tx *Tx) removeInstance(old *Instance) error {
	if err := tx.txn.Delete(tableInstances, old); err != nil {
		return fmt.Errorf("registry: delete %s: %w", old.ID, err)
	}
	tx.noteWrite(old.ID, nil)
	tx.added--
	if k := labelKeyOf(old.Proto, old.Service, old.Label); tx.labels[k] == old {
		delete(tx.labels, k)
	}
	if err := tx.countHost(old.Host, -1); err != nil {
		return err
	}
	if err := tx.countOwner(old.Owner, -1); err != nil {
		return err
	}
	return tx.countType(old, -1)
}

// insertInstance inserts a filled-in row and counts it.
func (tx *Tx) insertInstance(inst *Instance) error {
	if err := tx.txn.Insert(tableInstances, inst); err != nil {
		return fmt.Errorf("registry: insert %s: %w", inst.ID, err)
	}
	tx.noteWrite(inst.ID, inst)
	tx.added++
	tx.labels[labelKeyOf(inst.Proto, inst.Service, inst.Label)] = inst
	if err := tx.countHost(inst.Host, +1); err != nil {
		return err
	}
	if err := tx.countOwner(inst.Owner, +1); err != nil {
		return err
	}
	return tx.countType(inst, +1)
}

// collectHost removes an automatic host that no instance points at anymore.
func (tx *Tx) collectHost(name string) error {
	h, ok := tx.Host(name)
	if !ok || !h.Auto {
		return nil
	}
	p, err := tx.hostRef(FoldName(name))
	if err != nil {
		return err
	}
	if p.n > 0 {
		return nil
	}
	return tx.DeleteHost(name)
}

// hostRef returns the pending reference count of a lowercased host name,
// loading it from the table on first use.
func (tx *Tx) hostRef(name string) (*pendingRef, error) {
	if p := tx.hostRefs[name]; p != nil {
		return p, nil
	}
	p := &pendingRef{}
	raw, err := tx.txn.First(tableHostRefs, indexID, name)
	if err != nil {
		return nil, fmt.Errorf("registry: references to host %s: %w", name, err)
	}
	if raw != nil {
		p.n, p.stored = raw.(*hostRef).N, true
	}
	auto, err := tx.hostAutoRef(name)
	if err != nil {
		return nil, err
	}
	p.n += auto
	if tx.hostRefs == nil {
		tx.hostRefs = make(map[string]*pendingRef)
	}
	tx.hostRefs[name] = p
	return p, nil
}

// countHost keeps the host reference counts in step with the instances
// table; the row is written by flushTypes.
func (tx *Tx) countHost(name string, delta int) error {
	p, err := tx.hostRef(name) // Instance.Host is stored lowercased
	if err != nil {
		return err
	}
	p.n += delta
	return nil
}

// countType keeps the types table in step with the instances table; the
// row is written by flushTypes.
func (tx *Tx) countType(inst *Instance, delta int) error {
	// Rows are stored lowercased (fillInstance), so the key is exact.
	k := typeKey{inst.Proto, inst.Service}
	p := tx.types[k]
	if p == nil {
		p = &pendingType{ServiceType: ServiceType{Proto: inst.Proto, Service: inst.Service}}
		raw, err := tx.txn.First(tableTypes, indexID, inst.Proto, inst.Service)
		if err != nil {
			return fmt.Errorf("registry: type _%s._%s: %w", inst.Service, inst.Proto, err)
		}
		if raw != nil {
			p.ServiceType, p.stored = *raw.(*ServiceType), true
		}
		if tx.types == nil {
			tx.types = make(map[typeKey]*pendingType)
		}
		tx.types[k] = p
	}
	p.Instances += delta
	if inst.Healthy() {
		p.Healthy += delta
	}
	return nil
}
