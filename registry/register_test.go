package registry

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
	"testing"
	"unsafe"
)

// TestRegister: the defaults a Registration gets, and the rows it writes.
func TestRegister(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		name  string
		setup *Host // a host that exists before
		reg   Registration
		inst  string // the instance written, as describe prints it
		host  string // the host written, "" for none
	}{
		{name: "catalog port, host named after the caller",
			reg:  Registration{Service: "echo", From: lo},
			inst: "echo-tcp-h-127-0-0-1-7 _echo._tcp h-127-0-0-1-7 h-127-0-0-1:7 ttl 10",
			host: "h-127-0-0-1 [127.0.0.1] ttl 10 auto"},
		{name: "host named after the first address",
			reg:  Registration{Service: "web", Proto: "TCP", Port: new(8080), Addresses: []netip.Addr{netip.MustParseAddr("::ffff:10.0.0.1"), netip.MustParseAddr("::1")}, TTL: new(60)},
			inst: "web-tcp-h-10-0-0-1-8080 _web._tcp h-10-0-0-1-8080 h-10-0-0-1:8080 ttl 60",
			host: "h-10-0-0-1 [10.0.0.1 ::1] ttl 60 auto"},
		{name: "an existing host keeps its addresses",
			setup: &Host{Name: "box", Addrs: []netip.Addr{lo}, TTL: 30},
			reg:   Registration{Service: "echo", Host: "Box.", Port: new(7007), From: netip.MustParseAddr("192.0.2.1")},
			inst:  "echo-tcp-box-7007 _echo._tcp box-7007 box:7007 ttl 10",
			host:  "box [127.0.0.1] ttl 30"},
		{name: "an existing host made by hand stays so",
			setup: &Host{Name: "box", Addrs: []netip.Addr{lo}, TTL: 30},
			reg:   Registration{Service: "echo", Host: "box", Port: new(7007), Addresses: []netip.Addr{netip.MustParseAddr("192.0.2.1")}},
			inst:  "echo-tcp-box-7007 _echo._tcp box-7007 box:7007 ttl 10",
			host:  "box [192.0.2.1] ttl 10"},
		{name: "without addresses or caller, the host is only named",
			reg:  Registration{Service: "ftp", Host: "files", Port: new(2121), Instance: "My Files"},
			inst: "ftp-tcp-files-2121 _ftp._tcp My Files files:2121 ttl 10"},
		{name: "subtypes, with or without their underscore",
			reg:  Registration{Service: "http", Port: new(80), From: lo, Subtypes: []string{"_printer", "scan"}},
			inst: "http-tcp-h-127-0-0-1-80 _http._tcp h-127-0-0-1-80 h-127-0-0-1:80 ttl 10 subtypes [_printer _scan]",
			host: "h-127-0-0-1 [127.0.0.1] ttl 10 auto"},
		{name: "a check's defaults",
			reg:  Registration{Service: "http", Port: new(80), Addresses: []netip.Addr{lo}, Check: &Check{Type: "HTTP"}},
			inst: "http-tcp-h-127-0-0-1-80 _http._tcp h-127-0-0-1-80 h-127-0-0-1:80 ttl 10 check http http://127.0.0.1:80/ 10s",
			host: "h-127-0-0-1 [127.0.0.1] ttl 10 auto"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			r := New(1)
			if tt.setup != nil {
				if _, err := r.Update(func(tx *Tx) error { return tx.PutHost(*tt.setup) }); err != nil {
					t.Fatal(err)
				}
			}
			var id string
			if _, err := r.Update(func(tx *Tx) (err error) { id, err = tx.Register(tt.reg); return err }); err != nil {
				t.Fatal(err)
			}
			s := r.Snapshot()
			inst, ok := s.Instance(id)
			if !ok {
				t.Fatalf("no instance %s", id)
			}
			if got := describe(inst); got != tt.inst {
				t.Errorf("instance:\n%s\nwant\n%s", got, tt.inst)
			}
			var got string
			if h, ok := s.Host(inst.Host); ok {
				got = describeHost(h)
			}
			if got != tt.host {
				t.Errorf("host: %q, want %q", got, tt.host)
			}
		})
	}
}

func describe(inst *Instance) string {
	s := inst.ID + " _" + inst.Service + "._" + inst.Proto + " " + inst.Label + " " + inst.Host + ":" + strconv.Itoa(int(inst.Port)) + " ttl " + strconv.Itoa(int(inst.TTL))
	if len(inst.Subtypes) > 0 {
		s += fmt.Sprint(" subtypes ", inst.Subtypes)
	}
	if c := inst.Check; c != nil {
		s += " check " + c.Type + " " + c.Target + " " + string(must(c.Interval.MarshalText()))
	}
	return s
}

func describeHost(h *Host) string {
	var a []string
	for _, x := range h.Addrs {
		a = append(a, x.String())
	}
	s := h.Name + " [" + strings.Join(a, " ") + "] ttl " + strconv.Itoa(int(h.TTL))
	if h.Auto {
		s += " auto"
	}
	return s
}

func must[T any](v T, err error) T {
	if err != nil {
		panic(err)
	}
	return v
}

// TestRegisterInvalid: every rejected field is named, and nothing is written.
func TestRegisterInvalid(t *testing.T) {
	lo := netip.MustParseAddr("127.0.0.1")
	tests := []struct {
		reg   Registration
		field string
	}{
		{Registration{From: lo}, "name"},
		{Registration{Service: "no way", From: lo}, "name"},
		{Registration{Service: "nothere", From: lo}, "port"},
		{Registration{Service: "echo", Port: new(0), From: lo}, "port"},
		{Registration{Service: "echo", Port: new(65536), From: lo}, "port"},
		{Registration{Service: "echo", Priority: -1, From: lo}, "priority"},
		{Registration{Service: "echo", Weight: 65536, From: lo}, "weight"},
		{Registration{Service: "echo", TTL: new(MaxTTL + 1), From: lo}, "ttl"},
		{Registration{Service: "echo", Proto: "sctp", From: lo}, "proto"},
		{Registration{Service: "echo"}, "addresses"},
		{Registration{Service: "echo", Addresses: make([]netip.Addr, MaxAddresses+1)}, "addresses"},
		{Registration{Service: "echo", Addresses: manyAddrs(MaxAddresses + 1)}, "addresses"},
		{Registration{Service: "echo", Addresses: []netip.Addr{{}}}, "addresses"},
		{Registration{Service: "echo", Host: "bad host", From: lo}, "host"},
		{Registration{Service: "echo", From: lo, Check: &Check{Type: "tcp", Target: "nohostport"}}, "check.target"},
		{Registration{Service: "echo", From: lo, Check: &Check{Type: "ttl", Target: "x:1"}}, "check.target"},
		{Registration{Service: "echo", From: lo, Check: &Check{Type: "ping"}}, "check.type"},
		{Registration{Service: "echo", Proto: "udp", From: lo, Check: &Check{Type: "tcp"}}, "check.type"},
		{Registration{Service: "echo", Proto: "UDP", From: lo, Check: &Check{Type: "tcp", Target: "127.0.0.1:7"}}, "check.type"},
		{Registration{Service: "echo", From: lo, Subtypes: []string{"_printer", "_PRINTER"}}, "subtypes"},
		{Registration{Service: "echo", From: lo, Subtypes: []string{"_" + strings.Repeat("x", 63)}}, "subtypes"},
		{Registration{Service: "echo", From: lo, Subtypes: []string{"_a\tb"}}, "subtypes"},
	}
	for _, tt := range tests {
		r := New(1)
		_, err := r.Update(func(tx *Tx) error { _, err := tx.Register(tt.reg); return err })
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tt.field || !errors.Is(err, ErrInvalid) {
			t.Errorf("%+v: error %v, want one naming %s", tt.reg, err, tt.field)
		}
		if r.Snapshot().Serial() != 1 {
			t.Errorf("%+v: a refused registration wrote", tt.reg)
		}
	}
}

// TestRegisterAgain: registering an endpoint again replaces it, but not an
// instance that was moved away from the default ID's endpoint.
func TestRegisterAgain(t *testing.T) {
	r := New(1)
	reg := Registration{Service: "echo", Host: "a", Port: new(7), Instance: "first"}
	register := func(reg Registration) (string, error) {
		var id string
		_, err := r.Update(func(tx *Tx) (err error) { id, err = tx.Register(reg); return err })
		return id, err
	}
	id, err := register(reg)
	if err != nil {
		t.Fatal(err)
	}
	reg.Instance = "second"
	if again, err := register(reg); err != nil || again != id {
		t.Fatalf("again: %s, %v", again, err)
	}
	if inst, _ := r.Snapshot().Instance(id); inst.Label != "second" {
		t.Errorf("not replaced: %+v", inst)
	}
	if _, err := r.Update(func(tx *Tx) error {
		inst, _ := tx.Instance(id)
		moved := *inst
		moved.Host = "b"
		_, err := tx.PutInstance(moved)
		return err
	}); err != nil {
		t.Fatal(err)
	}
	var fe *FieldError
	if _, err := register(reg); !errors.As(err, &fe) || fe.Field != "id" {
		t.Errorf("registering the moved instance's old endpoint: %v, want an id error", err)
	}
}

// manyAddrs returns n distinct addresses: 10.0.0.1, 10.0.0.2, ...
func manyAddrs(n int) []netip.Addr {
	addrs := make([]netip.Addr, n)
	for i := range addrs {
		addrs[i] = netip.AddrFrom4([4]byte{10, 0, byte(i >> 8), byte(i + 1)})
	}
	return addrs
}

// TestRegisterNamesOneString: a registration that names neither its ID
// nor its label, as the API's usually do, keeps its ID, label and host
// name in one string (the label the ID's end, the host within it), the
// automatic host's row included: one allocation where there were three.
// The names read as before, and a registration that gives its label or ID
// has its own strings.
func TestRegisterNamesOneString(t *testing.T) {
	r := New(1)
	var ids []string
	if _, err := r.Update(func(tx *Tx) error {
		for _, reg := range []Registration{
			{Service: "db", Port: new(5432), Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.2")}},
			{Service: "web", Port: new(80), Instance: "Front", Addresses: []netip.Addr{netip.MustParseAddr("127.0.0.3")}},
		} {
			id, err := tx.Register(reg)
			if err != nil {
				return err
			}
			ids = append(ids, id)
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	within := func(s, in string) bool {
		p, q := uintptr(unsafe.Pointer(unsafe.StringData(s))), uintptr(unsafe.Pointer(unsafe.StringData(in)))
		return p >= q && p+uintptr(len(s)) <= q+uintptr(len(in))
	}
	snap := r.Snapshot()
	inst, ok := snap.Instance(ids[0])
	if !ok {
		t.Fatal("no instance", ids[0])
	}
	h, ok := snap.Host(inst.Host)
	if !ok {
		t.Fatal("no host", inst.Host)
	}
	if inst.ID != "db-tcp-h-127-0-0-2-5432" || inst.Label != "h-127-0-0-2-5432" || inst.Host != "h-127-0-0-2" || h.Name != inst.Host {
		t.Fatalf("ID %q, label %q, host %q, host row %q", inst.ID, inst.Label, inst.Host, h.Name)
	}
	for what, s := range map[string]string{"service": inst.Service, "proto": inst.Proto, "label": inst.Label, "host": inst.Host, "host row's name": h.Name} {
		if !within(s, inst.ID) {
			t.Errorf("the %s %q is not within the ID's string", what, s)
		}
	}
	// The ID's index key is the ID's bytes and the terminator after them
	// (idKeyed), not a copy.
	if _, key, err := (instanceIDIndex{}).FromObject(inst); err != nil || string(key) != inst.ID+"\x00" || unsafe.SliceData(key) != unsafe.StringData(inst.ID) {
		t.Errorf("ID key %q (%v), at %p for the ID at %p", key, err, unsafe.SliceData(key), unsafe.StringData(inst.ID))
	}
	front, ok := snap.Instance(ids[1])
	if !ok || front.Label != "Front" || front.ID != "web-tcp-h-127-0-0-3-80" || front.Host != "h-127-0-0-3" {
		t.Fatalf("%+v", front)
	}
	// A row whose ID was given, and a copy of a row given another ID, have
	// an ID key of their own.
	for _, inst := range []Instance{{ID: "Given", Service: "db", Port: 1, Host: "vm"}, func() Instance { c := *front; c.ID = "Other"; return c }()} {
		if err := fillInstance(&inst); err != nil {
			t.Fatal(err)
		}
		if _, key, _ := (instanceIDIndex{}).FromObject(&inst); string(key) != strings.ToLower(inst.ID)+"\x00" {
			t.Errorf("ID %q: key %q", inst.ID, key)
		}
	}
}
