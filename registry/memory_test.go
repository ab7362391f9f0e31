package registry

import (
	"bytes"
	"flag"
	"fmt"
	"net/netip"
	"os"
	"runtime"
	"runtime/debug"
	"runtime/metrics"
	"runtime/pprof"
	"strconv"
	"testing"
	"time"
	"unsafe"
)

var heapProfile = flag.String("heapprofile", "", "BenchmarkMemory writes the heap profile to this `file` once the registry is filled, while it is live (-memprofile comes after it is gone)")

// The two ways instances come, as memory sees them: bench/load's bulk
// path (services of 100 instances on 1,000 shared hosts, 50,000 per
// Update) and the API's (one Update per registration, each with a host
// of its own named after its address, as `annuaire register NAME PORT
// --address 127.x.y.z` makes it).

// loadBulk registers instances [from, to) in bench/load's shape.
func loadBulk(tb testing.TB, r *Registry, from, to int) {
	tb.Helper()
	if from == 0 {
		if _, err := r.Update(func(tx *Tx) error {
			for i := range 1000 {
				h := Host{Name: fmt.Sprintf("bh%d", i), Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})}, TTL: 60}
				if err := tx.PutHost(h); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			tb.Fatal(err)
		}
	}
	for done := from; done < to; {
		k := min(50000, to-done)
		if _, err := r.Update(func(tx *Tx) error {
			for i := done; i < done+k; i++ {
				if _, err := tx.PutInstance(bulkInstance(i)); err != nil {
					return err
				}
			}
			return nil
		}); err != nil {
			tb.Fatal(err)
		}
		done += k
	}
}

// apiAddr is registration i's address: 127.1.0.0 onwards.
func apiAddr(i int) netip.Addr {
	return netip.AddrFrom4([4]byte{127, byte(1 + i>>16), byte(i >> 8), byte(i)})
}

// loadAPI registers instances [from, to) one Update each, as the API
// does: services s0..s49, each with its own address and the host named
// after it.
func loadAPI(tb testing.TB, r *Registry, from, to int) {
	tb.Helper()
	for i := from; i < to; i++ {
		port := 7000 + i%1000
		if _, err := r.Update(func(tx *Tx) error {
			_, err := tx.Register(Registration{Service: "s" + strconv.Itoa(i%50), Port: &port, Addresses: []netip.Addr{apiAddr(i)}})
			return err
		}); err != nil {
			tb.Fatal(err)
		}
	}
}

// liveHeap is the heap that survives a collection, in bytes.
func liveHeap() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

// heapInuse is the heap's spans in use, live objects and the free slots
// between them, in bytes.
func heapInuse() uint64 {
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapInuse
}

// vmRSS is the process's resident set from /proc/self/status, in bytes;
// 0 where there is no such file.
func vmRSS() uint64 {
	b, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return 0
	}
	_, rest, ok := bytes.Cut(b, []byte("VmRSS:"))
	if !ok {
		return 0
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	kb, err := strconv.ParseUint(string(bytes.TrimSpace(bytes.TrimSuffix(bytes.TrimSpace(line), []byte("kB")))), 10, 64)
	if err != nil {
		return 0
	}
	return kb << 10
}

// heapClasses reads the runtime's account of the heap's pages, in bytes:
// objects (live and not yet swept), unused (free slots in spans in use),
// free (free spans still resident) and released (given back to the OS).
func heapClasses() (objects, unused, free, released uint64) {
	s := []metrics.Sample{{Name: "/memory/classes/heap/objects:bytes"}, {Name: "/memory/classes/heap/unused:bytes"},
		{Name: "/memory/classes/heap/free:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	metrics.Read(s)
	return s[0].Value.Uint64(), s[1].Value.Uint64(), s[2].Value.Uint64(), s[3].Value.Uint64()
}

// BenchmarkMemory reports what an instance costs the registry in memory,
// in memory only (New: no journal), on each path: the live heap after a
// collection, the heap's spans in use and the growth of the process's RSS,
// as the fill left it and once debug.FreeOSMemory has given back what it
// can, all per instance.
// Each run is one fill, so run it once per size:
//
//	go test -run '^$' -bench 'Memory/api/200000$' -benchtime 1x ./registry/ -heapprofile /tmp/api.prof
//	go tool pprof -sample_index=inuse_space -top /tmp/api.prof
//
// RSS depends on the collector's pace (GOGC) and on what the process did
// before: run one size per process for an RSS figure.
func BenchmarkMemory(b *testing.B) {
	for _, path := range []struct {
		name string
		load func(testing.TB, *Registry, int, int)
	}{{"bulk", loadBulk}, {"api", loadAPI}} {
		for _, n := range []int{200000, 1000000} {
			b.Run(fmt.Sprintf("%s/%d", path.name, n), func(b *testing.B) {
				for range b.N {
					heap0, rss0, inuse0 := liveHeap(), vmRSS(), heapInuse()
					_, unused0, free0, _ := heapClasses()
					r := New(1)
					path.load(b, r, 0, n)
					heap, rss := liveHeap(), vmRSS()
					b.ReportMetric(float64(heap-heap0)/float64(n), "heap-B/instance")
					// Where RSS above the live heap is, after the collection:
					// free slots in spans that hold live objects (unused), and
					// whole free spans not yet given back (free).
					_, unused, free, _ := heapClasses()
					b.ReportMetric((float64(unused)-float64(unused0))/float64(n), "unused-B/instance")
					b.ReportMetric((float64(free)-float64(free0))/float64(n), "free-B/instance")
					// The spans the live heap keeps, and RSS once everything
					// else is given back: what no GC setting goes below.
					// How long the registry's release (release.go) takes: a
					// collection and the return of every free page. It runs
					// with no lock held: writers do not wait for it.
					t0 := time.Now()
					debug.FreeOSMemory()
					b.ReportMetric(float64(time.Since(t0).Milliseconds()), "release-ms")
					b.ReportMetric((float64(heapInuse())-float64(inuse0))/float64(n), "inuse-B/instance")
					if rss0 > 0 {
						b.ReportMetric((float64(rss)-float64(rss0))/float64(n), "rss-B/instance")
						b.ReportMetric((float64(vmRSS())-float64(rss0))/float64(n), "rss-freed-B/instance")
					}
					if *heapProfile != "" {
						f, err := os.Create(*heapProfile)
						if err != nil {
							b.Fatal(err)
						}
						err = pprof.Lookup("heap").WriteTo(f, 0)
						if cerr := f.Close(); err == nil {
							err = cerr
						}
						if err != nil {
							b.Fatal(err)
						}
					}
					runtime.KeepAlive(r)
				}
			})
		}
	}
}

// TestInstanceMemory bounds the heap an instance costs on each path, a
// quarter to a third above what it is (bulk 458 B, API 660 B at 20,000;
// 1,174 and 3,074 before the radix trees lost their watch channels, see
// third_party/go-immutable-radix, the reversed-name index its hosts of
// one label, the API's hosts their reference count rows, see hostRef,
// the nodes their unused edge room, a registration's names their own
// strings and its ID its own key, see fillInstance, the radix nodes,
// edges and leaves their channel fields, labels, slice headers and keys,
// the label index its row IDs, see instancesTable, and the row its
// health's string). Past the bound, look with BenchmarkMemory and
// -memprofile.
func TestInstanceMemory(t *testing.T) {
	const n = 20000
	for _, c := range []struct {
		path string
		load func(testing.TB, *Registry, int, int)
		max  uint64
	}{{"bulk", loadBulk, 600}, {"api", loadAPI, 850}} {
		heap0 := liveHeap()
		r := New(1)
		c.load(t, r, 0, n)
		heap := liveHeap()
		runtime.KeepAlive(r)
		if per := (heap - heap0) / n; per > c.max {
			t.Errorf("%s: %d heap bytes per instance, want at most %d", c.path, per, c.max)
		} else {
			t.Logf("%s: %d heap bytes per instance", c.path, per)
		}
	}
}

// bulkInstance is the i-th instance the bulk benchmarks load: 100 per
// service, on 1,000 hosts, as bench/load spreads them.
func bulkInstance(i int) Instance {
	return Instance{ID: fmt.Sprintf("b%d", i), Service: fmt.Sprintf("b%d", i/100), Proto: "tcp",
		Label: fmt.Sprintf("i%d", i%100), Host: fmt.Sprintf("bh%d", i%1000), Port: uint16(10000 + i%50000), TTL: 60}
}

// TestInstanceRowSize: the row is in the allocator's 176-byte class
// (192 while the health was a string), with idKeyed in its padding.
func TestInstanceRowSize(t *testing.T) {
	if s := unsafe.Sizeof(Instance{}); s > 176 {
		t.Errorf("an Instance is %d bytes, want at most 176", s)
	}
}
