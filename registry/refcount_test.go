package registry

import (
	"errors"
	"fmt"
	"log/slog"
	"math/rand/v2"
	"net/netip"
	"strconv"
	"testing"
)

// TestAutoHostRefCount checks that an automatic host goes with the last
// instance that targets it, and not before, also after a restart (the
// counts are rebuilt from the journal) and after an aborted Update.
func TestAutoHostRefCount(t *testing.T) {
	dir := t.TempDir()
	opts := Options{Logger: slog.New(slog.DiscardHandler)}
	r := mustOpen(t, dir, opts)
	box := &Host{Name: "Box", Addrs: []netip.Addr{netip.MustParseAddr("10.0.0.9")}, Auto: true}
	a := mustRegister(t, r, Instance{Service: "echo", Host: "box", Port: 7}, box)
	b := mustRegister(t, r, Instance{Service: "http", Host: "BOX", Port: 80}, nil)
	mustRegister(t, r, Instance{Service: "echo", Host: "other", Port: 7}, nil)
	if n := len(collect(r.Snapshot().OnHost("Box"))); n != 2 {
		t.Fatalf("OnHost = %d instances, want 2", n)
	}
	boom := errors.New("boom")
	if _, err := r.Update(func(tx *Tx) error {
		if err := tx.DeleteInstance(a); err != nil {
			return err
		}
		if err := tx.DeleteInstance(b); err != nil {
			return err
		}
		if _, ok := tx.Host("box"); ok {
			t.Error("host still there inside the Tx after its last instance went")
		}
		if _, ok := tx.Type("tcp", "http"); ok {
			t.Error("type still counted inside the Tx after its last instance went")
		}
		return boom
	}); !errors.Is(err, boom) {
		t.Fatalf("Update = %v", err)
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}

	r = mustOpen(t, dir, opts)
	defer r.Close()
	if err := r.Deregister(a); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Snapshot().Host("box"); !ok {
		t.Fatal("host collected while an instance still targets it")
	}
	if err := r.Deregister(b); err != nil {
		t.Fatal(err)
	}
	if _, ok := r.Snapshot().Host("box"); ok {
		t.Fatal("automatic host kept after its last instance went")
	}
	if st, ok := r.Snapshot().Type("tcp", "echo"); !ok || st.Instances != 1 || st.Healthy != 1 {
		t.Fatalf("type echo = %+v, %v; want 1 instance", st, ok)
	}
}

func collect[T any](seq func(func(T) bool)) []T {
	var out []T
	for v := range seq {
		out = append(out, v)
	}
	return out
}

// TestHostRefsFollowInstances: whatever hosts and instances do, HostRefs
// is the number of instances that target the name, and a host a
// registration created, with its one instance, has no row of its own
// (hostRef). Random registrations, deregistrations, moves, hosts put
// automatic or not, and deletes, some in one Update, some failing half
// way, checked after each step, after a restart (replay of the journal)
// and after one from checkpoints (small segments).
func TestHostRefsFollowInstances(t *testing.T) {
	names := []string{"h0", "h1", "h2", "h3", "h4"}
	check := func(snap *Snapshot, when string) {
		t.Helper()
		want := map[string]int{}
		for inst := range snap.All() {
			want[inst.Host]++
		}
		for _, n := range names {
			if got := snap.HostRefs(n); got != want[n] {
				t.Fatalf("%s: HostRefs(%s) = %d, want %d", when, n, got, want[n])
			}
			if h, ok := snap.Host(n); ok && h.Auto && want[n] == 0 && snap.HostRefs(n) != 0 {
				t.Fatalf("%s: automatic host %s with no instance", when, n)
			}
		}
	}
	randomUpdates(t, rand.New(rand.NewPCG(1, 2)), 3, check, func(tx *Tx, rnd *rand.Rand) error {
		host := names[rnd.IntN(len(names))]
		switch rnd.IntN(6) {
		case 0, 1:
			port := 1 + rnd.IntN(20)
			_, err := tx.Register(Registration{Service: "s" + strconv.Itoa(rnd.IntN(3)), Port: &port, Host: host,
				Addresses: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(1 + rnd.IntN(5))})}})
			return err
		case 2:
			port := uint16(1 + rnd.IntN(20))
			_, err := tx.PutInstance(Instance{Service: "t", Host: host, Port: port})
			return err
		case 3:
			for inst := range tx.All() {
				if rnd.IntN(3) == 0 {
					return tx.DeleteInstance(inst.ID)
				}
			}
		case 4:
			return tx.PutHost(Host{Name: host, Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, 0, byte(rnd.IntN(9))})}, Auto: rnd.IntN(2) == 0})
		case 5:
			if _, ok := tx.Host(host); ok {
				return tx.DeleteHost(host)
			}
		}
		return nil
	})

	// A registration's own host: no row.
	r2 := New(1)
	loadAPI(t, r2, 0, 10)
	snap := r2.Snapshot()
	n := 0
	for range rows[hostRef](&snap.reader, tableHostRefs, indexID+"_prefix", "") {
		n++
	}
	if n != 0 {
		t.Errorf("%d reference count rows for 10 registrations with their own hosts, want 0", n)
	}
	for h := range snap.Hosts() {
		if n := snap.HostRefs(h.Name); n != 1 {
			t.Errorf("HostRefs(%s) = %d, want 1", h.Name, n)
		}
	}
}

// TestHostRefsReplayedHost: a journaled host change replayed in a
// transaction that has not loaded the host's count still moves it to the
// host's new row (Host.restore and Host.drop call hostChanging).
func TestHostRefsReplayedHost(t *testing.T) {
	r := New(1)
	addr := []netip.Addr{netip.MustParseAddr("10.0.0.1")}
	mustRegister(t, r, Instance{Service: "echo", Host: "box", Port: 7}, &Host{Name: "box", Addrs: addr})
	replay := func(c Change) {
		t.Helper()
		tx := newTx(r.db, r.Catalog)
		if err := tx.replay(c); err != nil {
			t.Fatal(err)
		}
		if err := tx.flushTypes(); err != nil {
			t.Fatal(err)
		}
		tx.txn.Commit()
		r.snap.Store(r.newSnapshot())
	}
	for _, c := range []Change{
		{Row: &Host{Name: "box", Addrs: addr, Auto: true}},
		{Row: &Host{Name: "box", Addrs: addr}},
		{Row: &Host{Name: "box", Addrs: addr, Auto: true}},
		{Delete: true, Row: &Host{Name: "box"}},
		{Row: &Host{Name: "box", Addrs: addr, Auto: true}},
	} {
		replay(c)
		if n := r.Snapshot().HostRefs("box"); n != 1 {
			t.Fatalf("after replaying %+v: HostRefs = %d, want 1", c, n)
		}
	}
}

// randomUpdates is the random walk TestHostRefsFollowInstances and
// TestLabelsFollowInstances check their invariant over: 400 Updates of one
// to maxOps ops (op; ErrInvalid is a refusal, not a failure), one in eight
// failing at its end, on a registry with small segments (so that it
// checkpoints); check sees the registry after each Update and after a
// restart that replays the journal.
func randomUpdates(t *testing.T, rnd *rand.Rand, maxOps int, check func(snap *Snapshot, when string), op func(tx *Tx, rnd *rand.Rand) error) {
	t.Helper()
	dir := t.TempDir()
	opts := Options{Serial: 1, SegmentSize: 8 << 10, Logger: slog.New(slog.DiscardHandler)}
	r := mustOpen(t, dir, opts)
	boom := errors.New("boom")
	for step := range 400 {
		_, err := r.Update(func(tx *Tx) error {
			for range 1 + rnd.IntN(maxOps) {
				if err := op(tx, rnd); err != nil && !errors.Is(err, ErrInvalid) {
					return err
				}
			}
			if rnd.IntN(8) == 0 {
				return boom
			}
			return nil
		})
		if err != nil && !errors.Is(err, boom) {
			t.Fatalf("step %d: %v", step, err)
		}
		check(r.Snapshot(), fmt.Sprintf("step %d", step))
	}
	if err := r.Close(); err != nil {
		t.Fatal(err)
	}
	r = mustOpen(t, dir, opts)
	defer r.Close()
	check(r.Snapshot(), "after a restart")
}
