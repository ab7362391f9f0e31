// Command load fills an annuaire data directory with the benchmark zone:
// 20 hosts h1..h20 with one instance each of services s1..s20 (the part
// the query file asks about), then as many more instances as -instances
// says, spread over 1,000 hosts and services of 100 instances each. It
// writes through the registry API, durably (one journalled Update per
// -batch instances), before annuaire serve opens the directory.
//
// With -api, it registers -instances instances through a running
// server's HTTP API instead, the way users do: one POST /api/services
// each, with an address of its own (127.1.0.0 onwards) and the host named
// after it, from -workers connections; with -pid, it reports the
// server's RSS growth per registration (Linux).
package main

import (
	"flag"
	"fmt"
	"log/slog"
	"net/netip"
	"os"
	"runtime"
	"time"

	"github.com/annuaire/annuaire/registry"
)

func main() {
	data := flag.String("data", "", "data `directory` to fill (annuaire serve --data)")
	n := flag.Int("instances", 100, "total instances to register (at least 20)")
	batch := flag.Int("batch", 50000, "instances per Update")
	reopen := flag.Bool("reopen", false, "then open the directory again, as annuaire serve would, and report the restart's time and heap")
	api := flag.String("api", "", "register through this running server's web API `URL` instead of filling -data")
	tokenFile := flag.String("token-file", "", "with -api: `file` holding the API bearer token (DATA/token)")
	workers := flag.Int("workers", 32, "with -api: concurrent connections")
	pid := flag.Int("pid", 0, "with -api: the server's process `ID`, to report its RSS growth")
	rest := flag.Duration("rest", 5*time.Second, "with -pid: how long to leave the server without writes before reading its RSS again")
	flag.Parse()
	if *api != "" {
		if err := register(*api, *tokenFile, *n, *workers, *pid, *rest); err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			os.Exit(1)
		}
		return
	}
	if err := run(*data, *n, *batch); err != nil {
		fmt.Fprintln(os.Stderr, "load:", err)
		os.Exit(1)
	}
	if *reopen {
		// After run has returned: the registry it filled is garbage.
		if err := restart(*data); err != nil {
			fmt.Fprintln(os.Stderr, "load:", err)
			os.Exit(1)
		}
	}
}

// heapAfterGC is the live heap, in bytes.
func heapAfterGC() uint64 {
	runtime.GC()
	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	return ms.HeapAlloc
}

func restart(dir string) error {
	base := heapAfterGC()
	start := time.Now()
	reg, err := registry.Open(dir, registry.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	elapsed := time.Since(start)
	n := 0
	for range reg.Snapshot().All() {
		n++
	}
	heap := heapAfterGC() - base
	fmt.Printf("reopened %d instances in %.1f s; heap %d MiB (%d bytes per instance)\n",
		n, elapsed.Seconds(), heap>>20, heap/uint64(max(n, 1)))
	return reg.Close()
}

func run(dir string, n, batch int) error {
	if dir == "" {
		return fmt.Errorf("-data is required")
	}
	start := time.Now()
	reg, err := registry.Open(dir, registry.Options{Logger: slog.New(slog.DiscardHandler)})
	if err != nil {
		return err
	}
	defer reg.Close()
	_, err = reg.Update(func(tx *registry.Tx) error {
		for i := 1; i <= 20; i++ {
			h := registry.Host{Name: fmt.Sprintf("h%d", i), Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 0, 0, byte(i)})}, TTL: 60}
			if err := tx.PutHost(h); err != nil {
				return err
			}
			inst := registry.Instance{ID: fmt.Sprintf("s%d", i), Service: fmt.Sprintf("s%d", i), Proto: "tcp", Label: "inst",
				Host: h.Name, Port: uint16(8000 + i), Priority: 10, Weight: 5, TTL: 60, TXT: registry.TXT{"v=1"}}
			if _, err := tx.PutInstance(inst); err != nil {
				return err
			}
		}
		for i := range 1000 {
			h := registry.Host{Name: fmt.Sprintf("bh%d", i), Addrs: []netip.Addr{netip.AddrFrom4([4]byte{10, 1, byte(i >> 8), byte(i)})}, TTL: 60}
			if err := tx.PutHost(h); err != nil {
				return err
			}
		}
		return nil
	})
	if err != nil {
		return err
	}
	for done := 20; done < n; {
		k := min(batch, n-done)
		_, err := reg.Update(func(tx *registry.Tx) error {
			for i := done; i < done+k; i++ {
				inst := registry.Instance{ID: fmt.Sprintf("b%d", i), Service: fmt.Sprintf("b%d", i/100), Proto: "tcp",
					Label: fmt.Sprintf("i%d", i%100), Host: fmt.Sprintf("bh%d", i%1000), Port: uint16(10000 + i%50000), TTL: 60}
				if _, err := tx.PutInstance(inst); err != nil {
					return err
				}
			}
			return nil
		})
		if err != nil {
			return err
		}
		done += k
	}
	if err := reg.Close(); err != nil {
		return err
	}
	elapsed := time.Since(start)
	heap := heapAfterGC()
	fmt.Printf("registered %d instances in %.1f s (%.0f/s), durable; heap %d MiB (%d bytes per instance)\n",
		n, elapsed.Seconds(), float64(n)/elapsed.Seconds(), heap>>20, heap/uint64(n))
	return nil
}
