package registry

import (
	"errors"
	"net/netip"
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
		if inst.Label != "box-7007" || inst.TTL != DefaultTTL || inst.Health != Passing {
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
		{Instance{Service: "echo", Host: "a", Port: 1, TXT: map[string]string{"a=b": ""}}, "txt"},
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
