package registry

import (
	"net/netip"
	"path/filepath"
	"strings"
	"testing"
)

// TestReverseSerial: a reverse zone's serial is the serial of the last
// change to the PTR records of its addresses, whatever else changes, and
// a network keeps its last serial when its last address goes.
func TestReverseSerial(t *testing.T) {
	r := New(100)
	put := func(h Host) uint32 {
		t.Helper()
		s, err := r.Update(func(tx *Tx) error { return tx.PutHost(h) })
		if err != nil {
			t.Fatal(err)
		}
		return s
	}
	addrs := func(ss ...string) []netip.Addr {
		var out []netip.Addr
		for _, s := range ss {
			out = append(out, netip.MustParseAddr(s))
		}
		return out
	}
	serials := func(want map[string]uint32) {
		t.Helper()
		snap := r.Snapshot()
		for p, w := range want {
			if got := snap.ReverseSerial(netip.MustParsePrefix(p)); got != w {
				t.Errorf("ReverseSerial(%s) = %d, want %d", p, got, w)
			}
		}
	}

	serials(map[string]uint32{"127.0.0.0/24": 100, "2001:db8::/64": 100}) // the floor
	a := put(Host{Name: "a", Addrs: addrs("127.0.0.1", "2001:db8::1")})
	serials(map[string]uint32{"127.0.0.0/24": a, "127.0.0.0/8": a, "2001:db8::/64": a, "2001:db8::/80": a, "10.0.0.0/24": 100})
	if _, err := r.Register(Instance{Service: "echo", Host: "a", Port: 7}, nil); err != nil {
		t.Fatal(err)
	}
	b := put(Host{Name: "b", Addrs: addrs("10.0.0.1")})
	serials(map[string]uint32{"127.0.0.0/24": a, "10.0.0.0/24": b, "10.0.0.0/8": b, "0.0.0.0/0": b})
	put(Host{Name: "a", Addrs: addrs("127.0.0.1", "2001:db8::1", "2001:db8:0:1::1")}) // another /64
	serials(map[string]uint32{"127.0.0.0/24": a, "2001:db8::/64": a, "2001:db8::/48": r.Snapshot().Serial()})
	ttl := put(Host{Name: "a", TTL: 30, Addrs: addrs("127.0.0.1", "2001:db8::1", "2001:db8:0:1::1")})
	serials(map[string]uint32{"127.0.0.0/24": ttl, "2001:db8::/64": ttl, "10.0.0.0/24": b})
	gone, err := r.Update(func(tx *Tx) error { return tx.DeleteHost("b") })
	if err != nil {
		t.Fatal(err)
	}
	serials(map[string]uint32{"10.0.0.0/24": gone, "127.0.0.0/24": ttl})
	snap := r.Snapshot()
	if snap.HasAddrIn(netip.MustParsePrefix("10.0.0.0/24")) || !snap.HasAddrIn(netip.MustParsePrefix("2001:db8::/32")) ||
		snap.HasAddrIn(netip.MustParsePrefix("2001:db8:0:2::/64")) || !snap.HasAddrIn(netip.MustParsePrefix("127.0.0.1/32")) {
		t.Error("HasAddrIn is wrong")
	}
	var nets []string
	for n := range snap.ReverseNets() {
		nets = append(nets, n.String())
	}
	if want := "[127.0.0.0/24 2001:db8::/64 2001:db8:0:1::/64]"; netsString(nets) != want {
		t.Errorf("ReverseNets = %v, want %s", nets, want)
	}
}

func netsString(nets []string) string {
	s := "["
	for i, n := range nets {
		if i > 0 {
			s += " "
		}
		s += n
	}
	return s + "]"
}

// TestReverseSerialRestart: stamps survive a restart, from the journal
// alone and from checkpoints; a checkpoint written before stamps existed
// gives every reverse zone the restored serial as its floor.
func TestReverseSerialRestart(t *testing.T) {
	for _, seg := range []int64{0, 1024} {
		dir := filepath.Join(t.TempDir(), "data")
		r := mustOpen(t, dir, Options{Serial: 100, SegmentSize: seg})
		for i := range 30 {
			mustRegister(t, r, echoInstance(i), &Host{Name: hostFor(i).Name, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, byte(i), 1})}, Auto: true})
		}
		if err := r.Deregister(echoInstance(3).Service + "-tcp-h3-1003"); err != nil {
			t.Fatal(err)
		}
		want := dump(r.Snapshot())
		r.Close()
		r = mustOpen(t, dir, Options{})
		if got := dump(r.Snapshot()); got != want {
			t.Errorf("segment %d: restored stamps differ:\n got %s\nwant %s", seg, got, want)
		}
		if got := r.Snapshot().ReverseSerial(netip.MustParsePrefix("10.0.3.0/24")); got != 100+30+1 {
			t.Errorf("segment %d: the emptied network's serial is %d after a restart, want %d", seg, got, 100+30+1)
		}
		r.Close()
	}
}

// TestAddrKeyRoom: a host's address keys have room for exactly the host's
// name key, which memdb appends to them (the index is not unique): the
// append neither copies the key nor leaves unused bytes in a key that lives
// as long as the host. And the keys read as before.
func TestAddrKeyRoom(t *testing.T) {
	h := &Host{Name: "h-127-1-123-45", Addrs: []netip.Addr{netip.MustParseAddr("127.1.123.45"), netip.MustParseAddr("2001:db8::1")}}
	_, keys, err := addrIndex{}.FromObject(h)
	if err != nil {
		t.Fatal(err)
	}
	name := fieldKey(nil, h.Name)
	for i, want := range []string{"4.127.1.123.45.", "6.2.0.0.1.0.d.b.8." + strings.Repeat("0.", 23) + "1."} {
		if string(keys[i]) != want {
			t.Errorf("key %d: %q, want %q", i, keys[i], want)
		}
		if cap(keys[i]) != len(keys[i])+len(name) {
			t.Errorf("key %q: capacity %d, want %d", keys[i], cap(keys[i]), len(keys[i])+len(name))
		}
	}
}
