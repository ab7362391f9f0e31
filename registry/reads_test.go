package registry_test

import (
	"fmt"
	"iter"
	"slices"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/internal/registrytest"
	"github.com/annuaire/annuaire/registry"
)

// A read is one call of a Snapshot method, its result printed.
type read struct {
	name string
	do   func(s *registry.Snapshot) string
}

// reads are the Snapshot's read methods over every name registrytest
// writes, and a few it never does.
func reads() []read {
	var out []read
	add := func(name string, do func(s *registry.Snapshot) string) { out = append(out, read{name, do}) }
	add("Types", func(s *registry.Snapshot) string { return seq(s.Types()) })
	add("All", func(s *registry.Snapshot) string { return ptrs(s.All()) })
	add("Hosts", func(s *registry.Snapshot) string { return ptrs(s.Hosts()) })
	for _, proto := range []string{"tcp", "udp", "TCP", "sctp"} {
		add("HasProto "+proto, func(s *registry.Snapshot) string { return fmt.Sprint(s.HasProto(proto)) })
		for _, svc := range append(registrytest.Services, "ECHO", "ech", "nope") {
			add("Type "+proto+" "+svc, func(s *registry.Snapshot) string { t, ok := s.Type(proto, svc); return fmt.Sprint(t, ok) })
			add("Instances "+proto+" "+svc, func(s *registry.Snapshot) string { return ptrs(s.Instances(proto, svc)) })
			add("HasSubtypes "+proto+" "+svc, func(s *registry.Snapshot) string { return fmt.Sprint(s.HasSubtypes(proto, svc)) })
			for _, st := range []string{"_printer", "_PRINTER", "_scan", "_sub", "_print", "_printers"} {
				add("Subtype "+proto+" "+svc+" "+st, func(s *registry.Snapshot) string { return ptrs(s.Subtype(proto, svc, st)) })
			}
			for _, l := range append(registrytest.Labels, "ECHO ONE", "My Web", "v2") {
				add("ByLabel "+proto+" "+svc+" "+l, func(s *registry.Snapshot) string {
					inst, ok := s.ByLabel(proto, svc, l)
					return one(inst, ok)
				})
			}
		}
	}
	for _, h := range append(registrytest.Hosts, "A", "lab2", "x", "WWW.LAB", "www", "nope") {
		add("Host "+h, func(s *registry.Snapshot) string { x, ok := s.Host(h); return one(x, ok) })
		add("HasHostBelow "+h, func(s *registry.Snapshot) string { return fmt.Sprint(s.HasHostBelow(h)) })
		add("OnHost "+h, func(s *registry.Snapshot) string { return ptrs(s.OnHost(h)) })
	}
	for _, o := range append(registrytest.Owners, "ALICE", "carol") {
		add("Owned "+o, func(s *registry.Snapshot) string { return fmt.Sprint(s.Owned(o)) })
	}
	for _, a := range registrytest.Addrs {
		add("HostsByAddr "+a.String(), func(s *registry.Snapshot) string { return ptrs(s.HostsByAddr(a)) })
		for _, bits := range []int{0, 8, 16, 24, 32, 48, 64, 80, 128} {
			p, err := a.Prefix(bits)
			if err != nil {
				continue
			}
			add("HasAddrIn "+p.String(), func(s *registry.Snapshot) string { return fmt.Sprint(s.HasAddrIn(p)) })
			add("ReverseSerial "+p.String(), func(s *registry.Snapshot) string { return fmt.Sprint(s.ReverseSerial(p)) })
		}
	}
	add("ReverseNets", func(s *registry.Snapshot) string { return seq(s.ReverseNets()) })
	for _, id := range []string{"telnet", "f1", "F2", "echo-tcp-a-1", "http-udp-b-2", "nope"} {
		add("Instance "+id, func(s *registry.Snapshot) string { x, ok := s.Instance(id); return one(x, ok) })
	}
	return out
}

func seq[T any](s iter.Seq[T]) string {
	var b strings.Builder
	for v := range s {
		fmt.Fprintf(&b, "%+v;", v)
	}
	return b.String()
}

func ptrs[T any](s iter.Seq[*T]) string {
	var b strings.Builder
	for v := range s {
		fmt.Fprintf(&b, "%+v;", *v)
	}
	return b.String()
}

// drain reads every value of s: iterators read when iterated.
func drain[T any](s iter.Seq[T]) {
	for range s {
	}
}

func one[T any](v *T, ok bool) string {
	if !ok {
		return "none"
	}
	return fmt.Sprintf("%+v", *v)
}

// FuzzReadKeys: for a registry built by one program and changed by
// another, every read whose result the change altered recorded a key the
// change touched. That is what lets a cache keep an answer across a change
// that touched none of its keys.
func FuzzReadKeys(f *testing.F) {
	const P, D, H, Ph, Dh, C = registrytest.OpPutInstance, registrytest.OpDeleteInstance, registrytest.OpSetHealth,
		registrytest.OpPutHost, registrytest.OpDeleteHost, registrytest.OpCommit
	f.Add([]byte{Ph, 0, 1, 0, C, P, 0, 0, 0, 0, 1, 0}, []byte{H, 0, 1})
	f.Add([]byte{Ph, 4, 2, 0, 2, 1, P, 1, 0, 4, 1, 5}, []byte{Dh, 0})
	f.Add([]byte{P, 0, 0, 0, 0, 1, 0, C, P, 0, 0, 1, 1, 2, 0}, []byte{D, 1, P, 2, 0, 1, 3, 0, 2})
	f.Add([]byte{Ph, 5, 1, 3, 0, 0, P, 3, 0, 5, 0, 3, 0, 0, 0, 0, 1}, []byte{P, 3, 0, 5, 0, 3, 0, 0, 0, 0, 2, 0, 1})
	f.Add([]byte{P, 0, 1, 1, 1, 2, 2}, []byte{Ph, 1, 3, 2, 3, 1, 1})
	// Subtypes come, change and go with an instance's change.
	const Ch = registrytest.OpChangeInstance
	f.Add([]byte{P, 0, 0, 0, 0, 1, 0, C, Ch, 0, 6, 1}, []byte{Ch, 0, 6, 2})
	f.Add([]byte{P, 0, 0, 0, 0, 1, 0, C, Ch, 0, 6, 4}, []byte{Ch, 0, 6, 0})
	f.Add([]byte{P, 0, 0, 0, 0, 1, 0, C, Ch, 0, 6, 1}, []byte{Ch, 0, 4, 4})
	reads := reads()
	f.Fuzz(func(t *testing.T, build, change []byte) {
		reg := registry.New(1)
		for len(build) > 0 {
			if _, err := reg.Update(func(tx *registry.Tx) (err error) {
				build, err = registrytest.Apply(tx, build)
				return err
			}); err != nil {
				t.Fatal(err)
			}
		}
		before := reg.Snapshot()
		type result struct {
			keys []registry.Key
			out  string
		}
		results := make([]result, len(reads))
		for i, r := range reads {
			var rec registry.Reads
			results[i].out = r.do(before.Recording(&rec))
			results[i].keys = rec.Keys()
		}
		if _, err := reg.Update(func(tx *registry.Tx) error {
			_, err := registrytest.Apply(tx, change)
			return err
		}); err != nil {
			t.Fatal(err)
		}
		after := reg.Snapshot()
		sets, ok := after.History(before.Serial())
		if !ok {
			t.Fatal("no history from the snapshot before")
		}
		var touched []registry.Key
		for _, cs := range sets {
			touched = append(touched, after.Touched(cs)...)
		}
		for i, r := range reads {
			if got := r.do(after); got != results[i].out && !slices.ContainsFunc(results[i].keys, func(k registry.Key) bool { return slices.Contains(touched, k) }) {
				t.Errorf("%s changed, and recorded none of the keys the change touched:\nbefore %s\nafter  %s", r.name, results[i].out, got)
			}
		}
	})
}

// TestTouchedIsPrecise: a change touches the keys of what it wrote, not
// every read: the reads listed for each change keep their keys.
func TestTouchedIsPrecise(t *testing.T) {
	reg := registry.New(1)
	if _, err := reg.Update(func(tx *registry.Tx) error {
		for _, h := range []registry.Host{{Name: "a", Addrs: registrytest.Addrs[:1]}, {Name: "b", Addrs: registrytest.Addrs[1:2]}, {Name: "www.lab", Addrs: registrytest.Addrs[4:5]}} {
			if err := tx.PutHost(h); err != nil {
				return err
			}
		}
		for _, inst := range []registry.Instance{
			{ID: "e1", Service: "echo", Host: "a", Port: 7, Label: "One"},
			{ID: "h1", Service: "http", Host: "b", Port: 80},
		} {
			if _, err := tx.PutInstance(inst); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	untouched := map[string]struct {
		change func(*registry.Tx) error
		reads  []func(*registry.Snapshot)
	}{
		"a new instance of echo on a": {
			func(tx *registry.Tx) error {
				_, err := tx.PutInstance(registry.Instance{ID: "e2", Service: "echo", Host: "a", Port: 8})
				return err
			},
			[]func(*registry.Snapshot){
				func(s *registry.Snapshot) { s.Host("a") },
				func(s *registry.Snapshot) { drain(s.Instances("tcp", "http")) },
				func(s *registry.Snapshot) { s.Type("tcp", "http") },
				func(s *registry.Snapshot) { s.ByLabel("tcp", "echo", "One") },
				func(s *registry.Snapshot) { s.HasHostBelow("lab") },
			},
		},
		"a TXT change": {
			func(tx *registry.Tx) error {
				inst, _ := tx.Instance("e1")
				c := *inst
				c.TXT = registry.TXT{"v=2"}
				_, err := tx.PutInstance(c)
				return err
			},
			[]func(*registry.Snapshot){
				func(s *registry.Snapshot) { s.Type("tcp", "echo") },
				func(s *registry.Snapshot) { drain(s.Types()) },
				func(s *registry.Snapshot) { s.HasProto("tcp") },
				func(s *registry.Snapshot) { drain(s.Instances("tcp", "http")) },
				func(s *registry.Snapshot) { s.Host("a") },
			},
		},
		"an address of b": {
			func(tx *registry.Tx) error {
				return tx.PutHost(registry.Host{Name: "b", Addrs: registrytest.Addrs[2:4]})
			},
			[]func(*registry.Snapshot){
				func(s *registry.Snapshot) { s.Host("a") },
				func(s *registry.Snapshot) { s.HasHostBelow("lab") },
				func(s *registry.Snapshot) { drain(s.HostsByAddr(registrytest.Addrs[0])) },
				func(s *registry.Snapshot) { drain(s.Instances("tcp", "http")) },
				func(s *registry.Snapshot) { drain(s.Types()) },
			},
		},
		"a host below lab": {
			func(tx *registry.Tx) error {
				return tx.PutHost(registry.Host{Name: "x.lab", Addrs: registrytest.Addrs[5:]})
			},
			[]func(*registry.Snapshot){
				func(s *registry.Snapshot) { s.Host("lab2") },
				func(s *registry.Snapshot) { s.HasHostBelow("lab2") },
				func(s *registry.Snapshot) { s.HasHostBelow("b") },
			},
		},
	}
	for name, tc := range untouched {
		t.Run(name, func(t *testing.T) {
			snap := reg.Snapshot()
			serial, err := reg.Update(tc.change)
			if err != nil {
				t.Fatal(err)
			}
			after := reg.Snapshot()
			sets, _ := after.History(snap.Serial())
			if len(sets) != 1 || sets[0].Serial != serial {
				t.Fatalf("history %v", sets)
			}
			touched := after.Touched(sets[0])
			if len(touched) == 0 {
				t.Fatal("the change touched nothing")
			}
			for i, read := range tc.reads {
				var rec registry.Reads
				read(snap.Recording(&rec))
				keys := rec.Keys()
				if len(keys) == 0 {
					t.Errorf("read %d recorded nothing", i)
				}
				for _, k := range keys {
					if slices.Contains(touched, k) {
						t.Errorf("read %d depends on the change", i)
					}
				}
			}
		})
	}
}
