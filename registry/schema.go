package registry

import (
	"fmt"
	"strings"
	"unsafe"

	"github.com/hashicorp/go-memdb"
)

// Table and index names. Every DNS name is indexed folded (FoldName): DNS
// compares names with A-Z folded and nothing else (RFC 4343 section 3), and
// so does every lookup.
const (
	tableInstances = "instances"
	tableTypes     = "types"
	tableHosts     = "hosts"
	tableZone      = "zone"
	tableHostRefs  = "hostrefs"
	tableOwners    = "owners"
	tableStamps    = "stamps"

	indexID      = "id"
	indexLabel   = "label"   // instances by (proto, service, DNS-SD instance label)
	indexSubtype = "subtype" // instances by (proto, service, subtype, label), one entry per subtype
	indexRName   = "rname"   // hosts by reversed name, for empty non-terminals
	indexAddr    = "addr"    // hosts by address, for PTR and reverse zones

	zoneRow = "soa"
)

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableInstances: instancesTable(),
		tableTypes:     typesTable(),
		tableHosts:     hostsTable(),
		tableZone:      zoneTable(),
		tableHostRefs:  hostRefsTable(),
		tableOwners:    ownersTable(),
		tableStamps:    stampsTable(),
	}}
}

// instancesTable holds one row per registered service instance. Every index
// answers one DNS question in O(log n): the size of the registry does not
// change the cost of a lookup.
//
// Each index costs about 70 bytes per instance in go-immutable-radix (a
// leaf and a node, and its share of inner nodes; no watch channels, see
// third_party/go-immutable-radix), most of what an instance costs: there
// are only the two indexes that lookups by ID and by DNS name need. The
// SRV RRset of _service._proto is a prefix scan of the label index, not an
// index of its own.
func instancesTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableInstances,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: instanceIDIndex{},
			},
			indexSubtype: {
				Name:         indexSubtype,
				AllowMissing: true, // most instances have no subtype, and no entry
				Indexer:      subtypeIndex{},
			},
			indexLabel: {
				Name: indexLabel,
				// Unique: a label names one instance of a type (RFC 6763
				// section 4.1). memdb does not enforce it (a second row
				// would take the first's entry): Tx.PutInstance and, for a
				// journal's rows, Instance.restore refuse a label in use
				// before every insert. A unique index's key does not end
				// with the row's ID key as a non-unique one's does: 64 → 32
				// bytes per API registration.
				Unique:  true,
				Indexer: labelIndex{},
			},
		},
	}
}

// typesTable keeps one row per service type (_echo._tcp) with its instance
// counts, so that DNS-SD enumeration and "does _tcp exist" cost O(types),
// not O(instances).
func typesTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableTypes,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:   indexID,
				Unique: true,
				Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
					nameField[ServiceType]{"Proto", func(t *ServiceType) string { return t.Proto }},
					nameField[ServiceType]{"Service", func(t *ServiceType) string { return t.Service }},
				}},
			},
		},
	}
}

// hostsTable maps host names (relative to the zone) to addresses.
func hostsTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableHosts,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: nameField[Host]{"Name", func(h *Host) string { return h.Name }},
			},
			indexRName: {
				Name:   indexRName,
				Unique: true,
				// A name of one label is below no other: most hosts (every
				// one a registration names after its address) have no entry.
				AllowMissing: true,
				Indexer:      reversedNameIndex{},
			},
			indexAddr: {
				Name:         indexAddr,
				AllowMissing: true,
				Indexer:      addrIndex{},
			},
		},
	}
}

// hostRefsTable counts the instances that target each host name. It
// replaces an index of instances by host: one row per host instead of one
// index entry per instance.
func hostRefsTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableHostRefs,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: &memdb.StringFieldIndex{Field: "Name"},
			},
		},
	}
}

// ownersTable counts the instances each owner holds (owner.go), for
// quotas: one row per owner instead of an index entry per instance.
func ownersTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableOwners,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: &memdb.StringFieldIndex{Field: "Name"},
			},
		},
	}
}

// stampsTable keeps the serial of the last change to the addresses of
// each network (reverse.go).
func stampsTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableStamps,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: stampIndex{},
			},
		},
	}
}

// zoneTable has a single row holding the SOA serial. Every write touches it,
// so watching that row is watching the whole registry.
func zoneTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableZone,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: &memdb.StringFieldIndex{Field: "ID"},
			},
		},
	}
}

// instanceIDIndex indexes instances by folded ID. It builds the key
// nameField would, without a call through a func value and in one
// allocation: its keys are built for every insert, delete and lookup.
type instanceIDIndex struct{}

func (instanceIDIndex) FromObject(raw any) (bool, []byte, error) {
	inst, ok := raw.(*Instance)
	if !ok {
		return false, nil, fmt.Errorf("id index: %T is not an *Instance", raw)
	}
	if inst.ID == "" {
		return false, nil, nil
	}
	if inst.idKeyed {
		// The ID and its terminator, folded already (fillInstance): the
		// key fieldKey would make, without a copy. memdb and the radix
		// tree never write a key's bytes.
		return true, unsafe.Slice(unsafe.StringData(inst.ID), len(inst.ID)+1), nil
	}
	return true, fieldKey(nil, inst.ID), nil
}

func (instanceIDIndex) FromArgs(args ...any) ([]byte, error) {
	s, err := oneString(args)
	if err != nil {
		return nil, err
	}
	return fieldKey(nil, s), nil
}

// PrefixFromArgs leaves the terminator off: "" finds every instance.
func (x instanceIDIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	key, err := x.FromArgs(args...)
	if err != nil {
		return nil, err
	}
	return key[:len(key)-1], nil
}

// labelIndex indexes instances by (proto, service, label), lowercased, each
// field ended by \x00 as memdb.CompoundIndex of StringFieldIndexes would.
// A prefix is whole fields: (proto, service) finds the instances of
// _service._proto, an SRV RRset, in label order. The terminator is what
// keeps "echo" from also finding "echo2".
type labelIndex struct{}

func (labelIndex) FromObject(raw any) (bool, []byte, error) {
	inst, ok := raw.(*Instance)
	if !ok {
		return false, nil, fmt.Errorf("label index: %T is not an *Instance", raw)
	}
	key := make([]byte, 0, fieldKeyLen(inst.Proto)+fieldKeyLen(inst.Service)+fieldKeyLen(inst.Label))
	key = fieldKey(key, inst.Proto)
	key = fieldKey(key, inst.Service)
	return true, fieldKey(key, inst.Label), nil
}

func (x labelIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 3 {
		return nil, fmt.Errorf("label index: want proto, service and label, got %d arguments", len(args))
	}
	return x.PrefixFromArgs(args...)
}

func (labelIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	if len(args) == 0 || len(args) > 3 {
		return nil, fmt.Errorf("label index: want 1 to 3 arguments, got %d", len(args))
	}
	var key []byte
	for _, a := range args {
		s, ok := a.(string)
		if !ok {
			return nil, fmt.Errorf("label index: want string arguments, got %T", a)
		}
		key = fieldKey(key, s)
	}
	return key, nil
}

// subtypeIndex indexes instances by (proto, service, subtype, label), one
// entry per subtype, each field folded and ended by \x00 as labelIndex's:
// a prefix of (proto, service, subtype) is the browse RRset of the
// subtype, _subtype._sub._service._proto (RFC 6763 section 7.1), in label
// order; (proto, service) says whether _sub._service._proto exists.
type subtypeIndex struct{}

func (subtypeIndex) FromObject(raw any) (bool, [][]byte, error) {
	inst, ok := raw.(*Instance)
	if !ok {
		return false, nil, fmt.Errorf("subtype index: %T is not an *Instance", raw)
	}
	if len(inst.Subtypes) == 0 {
		return false, nil, nil
	}
	keys := make([][]byte, len(inst.Subtypes))
	for i, st := range inst.Subtypes {
		key := make([]byte, 0, len(inst.Proto)+len(inst.Service)+len(st)+len(inst.Label)+len(inst.ID)+5)
		key = fieldKey(key, inst.Proto)
		key = fieldKey(key, inst.Service)
		key = fieldKey(key, st)
		keys[i] = fieldKey(key, inst.Label)
	}
	return true, keys, nil
}

func (x subtypeIndex) FromArgs(args ...any) ([]byte, error) {
	if len(args) != 4 {
		return nil, fmt.Errorf("subtype index: want proto, service, subtype and label, got %d arguments", len(args))
	}
	return x.PrefixFromArgs(args...)
}

func (subtypeIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	if len(args) == 0 || len(args) > 4 {
		return nil, fmt.Errorf("subtype index: want 1 to 4 arguments, got %d", len(args))
	}
	var key []byte
	for _, a := range args {
		s, ok := a.(string)
		if !ok {
			return nil, fmt.Errorf("subtype index: want string arguments, got %T", a)
		}
		key = fieldKey(key, s)
	}
	return key, nil
}

// fieldKeyLen is the length of fieldKey's key for s.
func fieldKeyLen(s string) int { return len(s) + 1 }

// fieldKey appends s folded (FoldName) and the field terminator \x00 to
// key.
func fieldKey(key []byte, s string) []byte {
	if key == nil {
		key = make([]byte, 0, fieldKeyLen(s))
	}
	for i := 0; i < len(s); i++ {
		key = append(key, FoldByte(s[i]))
	}
	return append(key, 0)
}

// nameField indexes rows by a string field holding a name, folded: what
// memdb.StringFieldIndex with Lowercase does, but with DNS's folding
// (strings.ToLower folds Unicode, and makes every invalid UTF-8 byte the
// same rune). A row whose field is empty is not indexed.
type nameField[T any] struct {
	name string
	get  func(*T) string
}

func (x nameField[T]) FromObject(raw any) (bool, []byte, error) {
	row, ok := raw.(*T)
	if !ok {
		return false, nil, fmt.Errorf("%s index: %T is not a %T", x.name, raw, row)
	}
	v := x.get(row)
	if v == "" {
		return false, nil, nil
	}
	return true, fieldKey(nil, v), nil
}

func (x nameField[T]) FromArgs(args ...any) ([]byte, error) {
	s, err := oneString(args)
	if err != nil {
		return nil, err
	}
	return fieldKey(nil, s), nil
}

// PrefixFromArgs leaves the terminator off, as StringFieldIndex does.
func (x nameField[T]) PrefixFromArgs(args ...any) ([]byte, error) {
	key, err := x.FromArgs(args...)
	if err != nil {
		return nil, err
	}
	return key[:len(key)-1], nil
}

// reversedNameIndex indexes "www.lab" as "lab.www.", so that a prefix scan
// for "lab." finds every name below lab: that is how an empty non-terminal
// (RFC 8020, RFC 4592 section 2.2.2) is told from a name that does not exist.
// Only names of two labels or more are indexed: the only question asked of
// the index is what is below a name, and a name of one label is below none
// but the zone's apex, which exists anyway.
type reversedNameIndex struct{}

func (reversedNameIndex) FromObject(raw any) (bool, []byte, error) {
	h, ok := raw.(*Host)
	if !ok {
		return false, nil, fmt.Errorf("rname index: %T is not a *Host", raw)
	}
	if !strings.Contains(h.Name, ".") {
		return false, nil, nil
	}
	return true, []byte(reverseName(h.Name) + "\x00"), nil
}

func (reversedNameIndex) FromArgs(args ...any) ([]byte, error) {
	s, err := oneString(args)
	if err != nil {
		return nil, err
	}
	return []byte(reverseName(s) + "\x00"), nil
}

func (reversedNameIndex) PrefixFromArgs(args ...any) ([]byte, error) {
	s, err := oneString(args)
	if err != nil {
		return nil, err
	}
	return []byte(reverseName(s)), nil
}

// reverseName folds a relative name and reverses its labels, each
// followed by a dot: "www.Lab" → "lab.www.".
func reverseName(name string) string {
	labels := strings.Split(FoldName(name), ".")
	var b strings.Builder
	b.Grow(len(name) + 1)
	for i := len(labels) - 1; i >= 0; i-- {
		b.WriteString(labels[i])
		b.WriteByte('.')
	}
	return b.String()
}

func oneString(args []any) (string, error) {
	if len(args) != 1 {
		return "", fmt.Errorf("want one argument, got %d", len(args))
	}
	s, ok := args[0].(string)
	if !ok {
		return "", fmt.Errorf("want a string argument, got %T", args[0])
	}
	return s, nil
}
