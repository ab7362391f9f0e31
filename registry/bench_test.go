package registry

import (
	"fmt"
	"log/slog"
	"runtime"
	"sync/atomic"
	"testing"
	"time"
)

// BenchmarkRegister measures durable registrations, one Update each, from
// one writer and from many: the fsyncs per write show the group commit.
func BenchmarkRegister(b *testing.B) {
	for _, writers := range []int{1, 16, 64} {
		b.Run(fmt.Sprintf("writers=%d", writers), func(b *testing.B) {
			r := mustOpen(b, b.TempDir(), Options{Logger: slog.New(slog.DiscardHandler)})
			defer r.Close()
			var n atomic.Int64
			start := time.Now()
			if writers == 1 {
				for range b.N {
					if _, err := r.Register(echoInstance(int(n.Add(1))), nil); err != nil {
						b.Fatal(err)
					}
				}
			}
			b.SetParallelism((writers + runtime.GOMAXPROCS(0) - 1) / runtime.GOMAXPROCS(0))
			b.RunParallel(func(pb *testing.PB) {
				if writers == 1 {
					for pb.Next() {
					}
					return
				}
				for pb.Next() {
					i := int(n.Add(1))
					if _, err := r.Register(echoInstance(i), nil); err != nil {
						b.Error(err)
						return
					}
				}
			})
			r.j.mu.Lock()
			syncs, recs := r.j.syncs, r.j.seq
			r.j.mu.Unlock()
			b.ReportMetric(float64(syncs)/float64(recs), "fsyncs/write")
			b.ReportMetric(float64(n.Load())/time.Since(start).Seconds(), "registrations/s")
		})
	}
}

// BenchmarkRegisterAPI measures registrations in memory, one Update each
// in the API's shape (loadAPI), on a registry of 20,000: the time and the
// garbage of a commit of one registration, what fragments the heap
// (BenchmarkMemory).
func BenchmarkRegisterAPI(b *testing.B) {
	r := New(1)
	loadAPI(b, r, 0, 20000)
	b.ReportAllocs()
	b.ResetTimer()
	loadAPI(b, r, 20000, 20000+b.N)
}

// BenchmarkBulk registers b.N instances in one durable Update and reports
// the heap they take, and the time to restore them.
func BenchmarkBulk(b *testing.B) {
	for _, n := range []int{100000} {
		b.Run(fmt.Sprintf("instances=%d", n), func(b *testing.B) {
			for range b.N {
				dir := b.TempDir()
				r := mustOpen(b, dir, Options{Logger: slog.New(slog.DiscardHandler)})
				runtime.GC()
				var before, after runtime.MemStats
				runtime.ReadMemStats(&before)
				start := time.Now()
				if _, err := r.Update(func(tx *Tx) error {
					for i := range n {
						if _, err := tx.PutInstance(Instance{Service: "echo", Host: fmt.Sprintf("h%d", i), Port: 7}); err != nil {
							return err
						}
					}
					return nil
				}); err != nil {
					b.Fatal(err)
				}
				write := time.Since(start)
				runtime.GC()
				runtime.ReadMemStats(&after)
				b.ReportMetric(float64(after.HeapAlloc-before.HeapAlloc)/float64(n), "heap-bytes/instance")
				b.ReportMetric(write.Seconds(), "s-bulk-write")
				r.Close()

				start = time.Now()
				r = mustOpen(b, dir, Options{Logger: slog.New(slog.DiscardHandler)})
				b.ReportMetric(time.Since(start).Seconds(), "s-restore-journal")
				// Write a checkpoint and restore from it.
				if _, err := writeCheckpoint(dir, r.Snapshot(), nil, r.j.seg+1); err != nil {
					b.Fatal(err)
				}
				r.Close()
				start = time.Now()
				r = mustOpen(b, dir, Options{Logger: slog.New(slog.DiscardHandler)})
				b.ReportMetric(time.Since(start).Seconds(), "s-restore-checkpoint")
				if countInstances(r.Snapshot()) != n {
					b.Fatal("instances lost")
				}
				r.Close()
			}
		})
	}
}

// BenchmarkPutInstance inserts b.N instances in one in-memory Update, in
// bench/load's shape (services of 100 instances on 1,000 hosts): ns/op,
// B/op and allocs/op are per instance, commit included.
func BenchmarkPutInstance(b *testing.B) {
	r := New(1)
	b.ReportAllocs()
	if _, err := r.Update(func(tx *Tx) error {
		for i := range b.N {
			if _, err := tx.PutInstance(bulkInstance(i)); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		b.Fatal(err)
	}
}
