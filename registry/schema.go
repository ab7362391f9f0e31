package registry

import (
	"fmt"
	"strings"

	"github.com/hashicorp/go-memdb"
)

// Table and index names. Every DNS name is indexed lowercased: DNS compares
// names case-insensitively (RFC 1035 section 2.3.3) and so does every lookup.
const (
	tableInstances = "instances"
	tableTypes     = "types"
	tableHosts     = "hosts"
	tableZone      = "zone"
	tableHostRefs  = "hostrefs"

	indexID      = "id"
	indexService = "service" // instances by (proto, service): one SRV RRset
	indexLabel   = "label"   // instances by (proto, service, DNS-SD instance label)
	indexRName   = "rname"   // hosts by reversed name, for empty non-terminals
	indexAddr    = "addr"    // hosts by address, for PTR

	zoneRow = "soa"
)

func schema() *memdb.DBSchema {
	return &memdb.DBSchema{Tables: map[string]*memdb.TableSchema{
		tableInstances: instancesTable(),
		tableTypes:     typesTable(),
		tableHosts:     hostsTable(),
		tableZone:      zoneTable(),
		tableHostRefs:  hostRefsTable(),
	}}
}

// instancesTable holds one row per registered service instance. Every index
// answers one DNS question in O(log n): the size of the registry does not
// change the cost of a lookup.
func instancesTable() *memdb.TableSchema {
	return &memdb.TableSchema{
		Name: tableInstances,
		Indexes: map[string]*memdb.IndexSchema{
			indexID: {
				Name:    indexID,
				Unique:  true,
				Indexer: &memdb.StringFieldIndex{Field: "ID", Lowercase: true},
			},
			indexService: {
				Name: indexService,
				Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
					&memdb.StringFieldIndex{Field: "Proto", Lowercase: true},
					&memdb.StringFieldIndex{Field: "Service", Lowercase: true},
				}},
			},
			indexLabel: {
				Name: indexLabel,
				// Not Unique: memdb does not enforce uniqueness of secondary
				// indexes, Tx.PutInstance does.
				Indexer: &memdb.CompoundIndex{Indexes: []memdb.Indexer{
					&memdb.StringFieldIndex{Field: "Proto", Lowercase: true},
					&memdb.StringFieldIndex{Field: "Service", Lowercase: true},
					&memdb.StringFieldIndex{Field: "Label", Lowercase: true},
				}},
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
					&memdb.StringFieldIndex{Field: "Proto", Lowercase: true},
					&memdb.StringFieldIndex{Field: "Service", Lowercase: true},
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
				Indexer: &memdb.StringFieldIndex{Field: "Name", Lowercase: true},
			},
			indexRName: {
				Name:    indexRName,
				Unique:  true,
				Indexer: reversedNameIndex{},
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

// reversedNameIndex indexes "www.lab" as "lab.www.", so that a prefix scan
// for "lab." finds every name below lab: that is how an empty non-terminal
// (RFC 8020, RFC 4592 section 2.2.2) is told from a name that does not exist.
type reversedNameIndex struct{}

func (reversedNameIndex) FromObject(raw any) (bool, []byte, error) {
	h, ok := raw.(*Host)
	if !ok {
		return false, nil, fmt.Errorf("rname index: %T is not a *Host", raw)
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

// reverseName lowercases a relative name and reverses its labels, each
// followed by a dot: "www.Lab" → "lab.www.".
func reverseName(name string) string {
	labels := strings.Split(strings.ToLower(name), ".")
	var b strings.Builder
	b.Grow(len(name) + 1)
	for i := len(labels) - 1; i >= 0; i-- {
		b.WriteString(labels[i])
		b.WriteByte('.')
	}
	return b.String()
}

// addrIndex indexes a host under each of its addresses in canonical text
// form (netip.Addr.String), the form Snapshot.HostsByAddr asks with.
type addrIndex struct{}

func (addrIndex) FromObject(raw any) (bool, [][]byte, error) {
	h, ok := raw.(*Host)
	if !ok {
		return false, nil, fmt.Errorf("addr index: %T is not a *Host", raw)
	}
	if len(h.Addrs) == 0 {
		return false, nil, nil
	}
	keys := make([][]byte, 0, len(h.Addrs))
	for _, a := range h.Addrs {
		keys = append(keys, addrKey(a.String()))
	}
	return true, keys, nil
}

func (addrIndex) FromArgs(args ...any) ([]byte, error) {
	s, err := oneString(args)
	if err != nil {
		return nil, err
	}
	return addrKey(s), nil
}

func addrKey(canonical string) []byte { return []byte(canonical + "\x00") }

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
