package wire

import (
	"fmt"
	"sync"
	"testing"
)

// TestTable fills the cache's table past several growths and its bound,
// while readers look up every key already put: each one is found, with
// its latest entry, until the bound starts the table again.
func TestTable(t *testing.T) {
	c := New(nil, nil, Counters{})
	key := func(i int) []byte { return []byte(fmt.Sprintf("\x01k%d\x00", i)) }
	var mu sync.Mutex
	done := 0 // keys put so far
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := 0; ; i++ {
				select {
				case <-stop:
					return
				default:
				}
				mu.Lock()
				n := done
				mu.Unlock()
				if n == 0 || n > maxEntries {
					continue
				}
				k := key(i % n)
				if e := c.get(k); e == nil || e.key != string(k) {
					t.Errorf("key %d of %d: got %v", i%n, n, e)
					return
				}
			}
		}()
	}
	for i := range maxEntries - 1 {
		c.put(key(i), &entry{msg: []byte{byte(i)}})
		mu.Lock()
		done = i + 1
		mu.Unlock()
	}
	close(stop)
	wg.Wait()
	if got, want := len(c.tab.Load().slots), 2*maxEntries; got != want {
		t.Errorf("%d slots for %d entries, want %d", got, maxEntries-1, want)
	}
	newer := &entry{msg: []byte("newer")}
	c.put(key(7), newer)
	if e := c.get(key(7)); e != newer {
		t.Errorf("key 7 after a second put: %v, want the newer entry", e)
	}
	c.put(key(maxEntries-1), &entry{})
	c.put(key(maxEntries), &entry{})
	if c.get(key(1)) != nil || c.get(key(maxEntries)) == nil || c.tab.Load().used != 1 {
		t.Errorf("past %d entries: the table did not start again (%d used)", maxEntries, c.tab.Load().used)
	}
}
