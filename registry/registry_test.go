package registry

import (
	"errors"
	"net/netip"
	"slices"
	"testing"
)

func mustRegister(t *testing.T, r *Registry, inst Instance, h *Host) string {
	t.Helper()
	id, err := r.Register(inst, h)
	if err != nil {
		t.Fatalf("Register(%+v): %v", inst, err)
	}
	return id
}

func TestRegisterLookup(t *testing.T) {
	r := New(1)
	lo := netip.MustParseAddr("127.0.0.1")
	id := mustRegister(t, r, Instance{Service: "Echo", Host: "Box", Port: 7007},
		&Host{Name: "box", Addrs: []netip.Addr{lo}, Auto: true})
	if id != "echo-tcp-box-7007" {
		t.Errorf("id = %q", id)
	}
	s := r.Snapshot()
	if s.Serial() != 2 {
		t.Errorf("serial = %d, want 2", s.Serial())
	}
	var n int
	for inst := range s.Instances("TCP", "ECHO") {
		n++
		if inst.Label != "box-7007" || inst.TTL != 0 || inst.Health != Passing { // 0 is a TTL: defaults are Register's
			t.Errorf("defaults not filled: %+v", inst)
		}
	}
	if n != 1 {
		t.Fatalf("Instances = %d, want 1", n)
	}
	if _, ok := s.ByLabel("tcp", "echo", "BOX-7007"); !ok {
		t.Error("ByLabel is not case-insensitive")
	}
	if !s.HasProto("tcp") || s.HasProto("udp") {
		t.Error("HasProto wrong")
	}
	var hosts []string
	for h := range s.HostsByAddr(lo) {
		hosts = append(hosts, h.Name)
	}
	if len(hosts) != 1 || hosts[0] != "box" {
		t.Errorf("HostsByAddr = %v", hosts)
	}

	changed := s.Changed()
	select {
	case <-changed:
		t.Fatal("Changed closed before any change")
	default:
	}
	if err := r.Deregister(id); err != nil {
		t.Fatal(err)
	}
	select {
	case <-changed:
	default:
		t.Fatal("Changed not closed after a change")
	}
	s2 := r.Snapshot()
	if _, ok := s2.Host("box"); ok {
		t.Error("automatic host not collected with its last instance")
	}
	if _, ok := s2.Type("tcp", "echo"); ok {
		t.Error("type row left behind")
	}
	if _, ok := s.Instance(id); !ok {
		t.Error("old snapshot changed under its reader")
	}
}

func TestEmptyNonTerminalHosts(t *testing.T) {
	r := New(1)
	if _, err := r.Update(func(tx *Tx) error {
		return tx.PutHost(Host{Name: "www.lab", Addrs: []netip.Addr{netip.MustParseAddr("::1")}})
	}); err != nil {
		t.Fatal(err)
	}
	s := r.Snapshot()
	for name, want := range map[string]bool{"lab": true, "LAB": true, "www.lab": false, "ab": false, "www": false} {
		if got := s.HasHostBelow(name); got != want {
			t.Errorf("HasHostBelow(%q) = %v, want %v", name, got, want)
		}
	}
}

func TestUpdateIsAllOrNothing(t *testing.T) {
	r := New(7)
	boom := errors.New("boom")
	_, err := r.Update(func(tx *Tx) error {
		if _, err := tx.PutInstance(Instance{Service: "echo", Host: "a", Port: 7}); err != nil {
			return err
		}
		return boom
	})
	if !errors.Is(err, boom) {
		t.Fatalf("err = %v", err)
	}
	s := r.Snapshot()
	if s.Serial() != 7 {
		t.Errorf("serial moved to %d on a failed update", s.Serial())
	}
	for range s.All() {
		t.Error("failed update left an instance")
	}
}

func TestHealthCounts(t *testing.T) {
	r := New(1)
	id := mustRegister(t, r, Instance{Service: "http", Host: "w", Port: 80}, nil)
	mustRegister(t, r, Instance{Service: "http", Host: "w", Port: 81}, nil)
	if err := r.SetHealth(id, Critical); err != nil {
		t.Fatal(err)
	}
	typ, _ := r.Snapshot().Type("tcp", "http")
	if typ.Instances != 2 || typ.Healthy != 1 {
		t.Errorf("type = %+v, want 2 instances, 1 healthy", typ)
	}
	serial := r.Snapshot().Serial()
	if err := r.SetHealth(id, Critical); err != nil {
		t.Fatal(err)
	}
	if r.Snapshot().Serial() != serial {
		t.Error("setting the same health bumped the serial")
	}
}

func TestValidation(t *testing.T) {
	r := New(1)
	for _, tc := range []struct {
		inst  Instance
		field string
	}{
		{Instance{Service: "", Host: "a", Port: 1}, "name"},
		{Instance{Service: "averyveryverylongname", Host: "a", Port: 1}, "name"},
		{Instance{Service: "echo", Host: "a", Port: 1, Proto: "sctp"}, "proto"},
		{Instance{Service: "echo", Host: "-a", Port: 1}, "host"},
		{Instance{Service: "echo", Host: "a..b", Port: 1}, "host"},
		{Instance{Service: "echo", Host: "a", Port: 0}, "port"},
		{Instance{Service: "echo", Host: "a", Port: 1, TTL: MaxTTL + 1}, "ttl"},
		{Instance{Service: "echo", Host: "a", Port: 1, TXT: TXT{"=b"}}, "txt"},
		{Instance{Service: "echo", Host: "a", Port: 1, Check: &Check{Type: "ping"}}, "check.type"},
	} {
		_, err := r.Register(tc.inst, nil)
		var fe *FieldError
		if !errors.As(err, &fe) || fe.Field != tc.field || !errors.Is(err, ErrInvalid) {
			t.Errorf("Register(%+v) = %v, want a FieldError on %q", tc.inst, err, tc.field)
		}
	}
	mustRegister(t, r, Instance{Service: "echo", Host: "a", Port: 1, Label: "x"}, nil)
	if _, err := r.Register(Instance{Service: "echo", Host: "b", Port: 1, Label: "X"}, nil); !errors.Is(err, ErrInvalid) {
		t.Errorf("duplicate DNS-SD label accepted: %v", err)
	}
}

func TestCatalog(t *testing.T) {
	c := DefaultCatalog()
	for name, want := range map[string]uint16{
		"echo": 7, "discard": 9, "daytime": 13, "ftp": 21, "ssh": 22, "telnet": 23,
		"smtp": 25, "mail": 25, "domain": 53, "http": 80, "www": 80, "pop3": 110,
		"imap": 143, "https": 443, "submission": 587, "MAIL": 25,
	} {
		wk, ok := c.Lookup(name)
		if !ok || wk.Port != want {
			t.Errorf("Lookup(%q) = %+v, %v; want port %d", name, wk, ok, want)
		}
	}
	if got := c.Canonical("mail"); got != "smtp" {
		t.Errorf("Canonical(mail) = %q", got)
	}
	if got := c.Canonical("www"); got != "http" {
		t.Errorf("Canonical(www) = %q", got)
	}
	if wk, ok := c.ByPort(23, "tcp"); !ok || wk.Name != "telnet" {
		t.Errorf("ByPort(23) = %+v", wk)
	}
	if _, err := ParseCatalog("echo 7"); err == nil {
		t.Error("ParseCatalog accepted a line without a protocol")
	}
}

// TestInstancesOfOneType checks the prefix scan of the label index that
// answers Instances: one service type only (not "echo2" for "echo", nor
// udp for tcp), whatever the case, in label order.
func TestInstancesOfOneType(t *testing.T) {
	r := New(1)
	for _, inst := range []Instance{
		{Service: "echo", Host: "a", Port: 1, Label: "Zed"},
		{Service: "echo", Host: "b", Port: 2, Label: "alpha"},
		{Service: "echo", Host: "c", Port: 3, Label: "Mid"},
		{Service: "echo2", Host: "d", Port: 4, Label: "alpha"},
		{Service: "echo", Proto: "udp", Host: "e", Port: 5, Label: "alpha"},
		{Service: "ech", Host: "f", Port: 6},
	} {
		mustRegister(t, r, inst, nil)
	}
	var labels []string
	for inst := range r.Snapshot().Instances("TCP", "Echo") {
		labels = append(labels, inst.Label)
	}
	if want := []string{"alpha", "Mid", "Zed"}; !slices.Equal(labels, want) {
		t.Errorf("Instances(tcp, echo) = %q, want %q", labels, want)
	}
	if n := len(collect(r.Snapshot().Instances("tcp", "ech"))); n != 1 {
		t.Errorf("Instances(tcp, ech) = %d instances, want 1", n)
	}
	if n := len(collect(r.Snapshot().Instances("tcp", "nope"))); n != 0 {
		t.Errorf("Instances(tcp, nope) = %d instances, want 0", n)
	}
}

// TestTxReadsItsWrites checks that Instance and ByLabel inside a Tx, which
// answer from the rows the Tx wrote and from the registry as the Tx found
// it (see Tx.base), see every insert, replacement and delete of the Tx, and
// that the label check of PutInstance does too.
func TestTxReadsItsWrites(t *testing.T) {
	r := New(1)
	mustRegister(t, r, Instance{ID: "old", Service: "echo", Host: "a", Port: 1, Label: "L1"}, nil)
	mustRegister(t, r, Instance{ID: "gone", Service: "echo", Host: "a", Port: 2, Label: "L2"}, nil)
	_, err := r.Update(func(tx *Tx) error {
		// A row of the registry before the Tx.
		if inst, ok := tx.ByLabel("tcp", "echo", "l1"); !ok || inst.ID != "old" {
			t.Errorf("ByLabel(l1) = %v, %v; want old", inst, ok)
		}
		// Relabelled in the Tx: its old label is free, its new one taken.
		if _, err := tx.PutInstance(Instance{ID: "OLD", Service: "echo", Host: "a", Port: 1, Label: "L3"}); err != nil {
			return err
		}
		if _, ok := tx.ByLabel("tcp", "echo", "L1"); ok {
			t.Error("ByLabel finds a label its instance left in this Tx")
		}
		if inst, ok := tx.ByLabel("tcp", "echo", "L3"); !ok || inst.ID != "OLD" {
			t.Errorf("ByLabel(L3) = %v, %v; want OLD", inst, ok)
		}
		if inst, ok := tx.Instance("old"); !ok || inst.Label != "L3" {
			t.Errorf("Instance(old) = %v, %v; want the row relabelled L3", inst, ok)
		}
		if _, err := tx.PutInstance(Instance{ID: "new", Service: "echo", Host: "b", Port: 1, Label: "L1"}); err != nil {
			t.Errorf("taking a label freed in this Tx: %v", err)
		}
		if _, err := tx.PutInstance(Instance{ID: "clash", Service: "echo", Host: "b", Port: 2, Label: "l3"}); err == nil {
			t.Error("PutInstance took a label given to another instance in this Tx")
		}
		if _, err := tx.PutInstance(Instance{ID: "clash", Service: "echo", Host: "b", Port: 2, Label: "l2"}); err == nil {
			t.Error("PutInstance took the label of an instance of the registry")
		}
		// Deleted in the Tx: gone by ID and by label, its label free.
		if err := tx.DeleteInstance("gone"); err != nil {
			return err
		}
		if _, ok := tx.Instance("GONE"); ok {
			t.Error("Instance finds an instance deleted in this Tx")
		}
		if _, ok := tx.ByLabel("tcp", "echo", "L2"); ok {
			t.Error("ByLabel finds an instance deleted in this Tx")
		}
		if _, err := tx.PutInstance(Instance{ID: "clash", Service: "echo", Host: "b", Port: 2, Label: "l2"}); err != nil {
			t.Errorf("taking the label of an instance deleted in this Tx: %v", err)
		}
		// Written and deleted in the same Tx.
		if _, err := tx.PutInstance(Instance{ID: "brief", Service: "echo", Host: "c", Port: 1, Label: "L4"}); err != nil {
			return err
		}
		if err := tx.DeleteInstance("brief"); err != nil {
			return err
		}
		if _, ok := tx.ByLabel("tcp", "echo", "L4"); ok {
			t.Error("ByLabel finds an instance written and deleted in this Tx")
		}
		if err := tx.DeleteInstance("brief"); !errors.Is(err, ErrNotFound) {
			t.Errorf("deleting twice: %v, want ErrNotFound", err)
		}
		return nil
	})
	if err != nil {
		t.Fatal(err)
	}
	s := r.Snapshot()
	var got []string
	for inst := range s.Instances("tcp", "echo") {
		got = append(got, inst.ID+"="+inst.Label)
	}
	if want := []string{"new=L1", "clash=l2", "OLD=L3"}; !slices.Equal(got, want) {
		t.Errorf("after the Update: %q, want %q", got, want)
	}
	if typ, _ := s.Type("tcp", "echo"); typ.Instances != 3 {
		t.Errorf("type counts %d instances, want 3", typ.Instances)
	}
}

// TestPutHostUnchanged: putting a host as it already is writes nothing,
// so an update made only of that keeps the serial (RFC 2136 section
// 3.4.2.2); a real change still counts.
func TestPutHostUnchanged(t *testing.T) {
	r := New(7)
	h := Host{Name: "web", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}, TTL: 30}
	put := func(h Host) uint32 {
		t.Helper()
		s, err := r.Update(func(tx *Tx) error { return tx.PutHost(h) })
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	first := put(h)
	if again := put(h); again != first {
		t.Errorf("the same host again: serial %d -> %d", first, again)
	}
	h.Addrs = append(h.Addrs, netip.MustParseAddr("192.0.2.2"))
	if moved := put(h); moved == first {
		t.Errorf("a new address: serial still %d", moved)
	}
}

func TestSerialLess(t *testing.T) {
	for _, c := range []struct {
		a, b uint32
		want bool
	}{{1, 2, true}, {2, 1, false}, {5, 5, false}, {0xFFFFFFFF, 1, true}, {1, 0xFFFFFFFF, false}} {
		if got := SerialLess(c.a, c.b); got != c.want {
			t.Errorf("SerialLess(%d, %d) = %v", c.a, c.b, got)
		}
	}
}
