// Package registrytest writes registry changes chosen by bytes, for fuzz
// tests: every kind of write a Tx does, over a small set of names so that
// changes keep meeting the rows and the questions they are checked
// against. For tests only.
package registrytest

import (
	"errors"
	"fmt"
	"net/netip"
	"slices"

	"github.com/annuaire/annuaire/registry"
)

// The names changes are made of. Hosts of several labels make empty
// non-terminals; "echo" and "late" are both hosts and services; labels
// differ in ASCII case only, or in the case of a non-ASCII letter, or in a
// byte that is not UTF-8, or hold spaces and dots; TXT records differ in
// order, and in "key" against "key="; addresses are of both families.
var (
	Services = []string{"echo", "http", "smtp", "late", "many", "telnet"}
	Hosts    = []string{"a", "b", "echo", "ns", "www.lab", "x.lab2", "lab", "late", "m7"}
	Labels   = []string{"", "Echo One", "echo one", "L1", "M 7", "My Web.v2", "café", "CAFÉ", "bin\xfe", "bin\xff"}
	IDs      = []string{"", "telnet", "f1", "f2"}
	Addrs    = []netip.Addr{
		netip.MustParseAddr("127.0.0.1"), netip.MustParseAddr("127.0.0.2"), netip.MustParseAddr("::1"),
		netip.MustParseAddr("2001:db8::2"), netip.MustParseAddr("10.9.0.7"), netip.MustParseAddr("192.0.2.7"),
	}
	// Subtypes differ in ASCII case only, or not at all; "_sub" is also a
	// label of the name that lists them.
	Subtypes = [][]string{nil, {"_printer"}, {"_printer", "_scan"}, {"_PRINTER"}, {"_scan", "_sub"}}
	Owners   = []string{"", "alice", "bob"}
	TXTs     = []registry.TXT{nil, {"v=1"}, {"v=2", "path=/"}, {"path=/", "v=2"}, {"duplex"}, {"duplex="}, {"bin=\x00\xff"}}
)

// Operations, the first byte of each (modulo their number).
const (
	OpPutInstance = iota
	OpDeleteInstance
	OpSetHealth
	OpPutHost
	OpDeleteHost
	OpChangeInstance // one field of an instance tx holds: copy, change, put
	OpCommit         // ends the Update: Apply returns the rest of the program
	numOps
)

// Apply runs the operations of program in tx until the end of program or
// an OpCommit, and returns what follows. Each operation is a byte that
// chooses it and bytes that choose its arguments among the names above, or
// among the rows tx holds for a delete; missing bytes read as zero, so
// every program means something. An operation the registry refuses
// (ErrInvalid, ErrNotFound: it checks before it writes) is skipped; any
// other error is returned.
func Apply(tx *registry.Tx, program []byte) (rest []byte, err error) {
	p := &reader{b: program}
	for len(p.b) > 0 {
		op := p.byte() % numOps
		if op == OpCommit {
			break
		}
		err := apply(tx, op, p)
		if err != nil && !errors.Is(err, registry.ErrInvalid) && !errors.Is(err, registry.ErrNotFound) {
			return p.b, fmt.Errorf("operation %d: %w", op, err)
		}
	}
	return p.b, nil
}

func apply(tx *registry.Tx, op byte, p *reader) error {
	switch op {
	case OpPutInstance:
		inst := registry.Instance{
			Service:  pick(p, Services),
			Proto:    pick(p, []string{"tcp", "udp"}),
			Host:     pick(p, Hosts),
			Port:     uint16(1 + p.byte()%4), // few ports: default IDs collide
			Label:    pick(p, Labels),
			ID:       pick(p, IDs),
			Priority: uint16(p.byte() % 3),
			Weight:   uint16(p.byte() % 2),
			TTL:      pick(p, []uint32{0, 5, 30}),
			TXT:      slices.Clone(pick(p, TXTs)), // rows never share an array
			Health:   pick(p, []registry.Health{registry.Passing, registry.Critical}),
			Owner:    pick(p, Owners),
		}
		_, err := tx.PutInstance(inst)
		return err
	case OpDeleteInstance:
		id, ok := pickInstance(tx, p)
		if !ok {
			return nil
		}
		return tx.DeleteInstance(id)
	case OpSetHealth:
		id, ok := pickInstance(tx, p)
		if !ok {
			return nil
		}
		return tx.SetHealth(id, pick(p, []registry.Health{registry.Passing, registry.Critical}))
	case OpPutHost:
		h := registry.Host{Name: pick(p, Hosts)}
		for range p.byte() % 4 {
			h.Addrs = append(h.Addrs, pick(p, Addrs))
		}
		h.TTL = pick(p, []uint32{0, 5, 30})
		h.Auto = p.byte()%2 == 1
		return tx.PutHost(h)
	case OpDeleteHost:
		var names []string
		for h := range tx.Hosts() {
			names = append(names, h.Name)
		}
		if len(names) == 0 {
			return nil
		}
		return tx.DeleteHost(names[int(p.byte())%len(names)])
	case OpChangeInstance:
		id, ok := pickInstance(tx, p)
		if !ok {
			return nil
		}
		old, _ := tx.Instance(id)
		inst := *old
		switch p.byte() % 7 { // 7, not a new operation: older programs keep their meaning
		case 0:
			inst.TXT = slices.Clone(pick(p, TXTs))
		case 1:
			inst.Port = uint16(1 + p.byte()%4)
		case 2:
			inst.Priority, inst.Weight = uint16(p.byte()%3), uint16(p.byte()%2)
		case 3:
			inst.Host = pick(p, Hosts)
		case 4:
			inst.Label = pick(p, Labels)
		case 5:
			inst.TTL = pick(p, []uint32{0, 5, 30})
		case 6:
			inst.Subtypes = slices.Clone(pick(p, Subtypes))
		}
		_, err := tx.PutInstance(inst)
		return err
	}
	return nil
}

// pickInstance chooses one of the instances tx holds, by ID order.
func pickInstance(tx *registry.Tx, p *reader) (string, bool) {
	var ids []string
	for inst := range tx.All() {
		ids = append(ids, inst.ID)
	}
	if len(ids) == 0 {
		return "", false
	}
	slices.Sort(ids)
	return ids[int(p.byte())%len(ids)], true
}

func pick[T any](p *reader, from []T) T { return from[int(p.byte())%len(from)] }

type reader struct{ b []byte }

func (r *reader) byte() byte {
	if len(r.b) == 0 {
		return 0
	}
	c := r.b[0]
	r.b = r.b[1:]
	return c
}
