package main

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// register makes n registrations through the web API at url, each with
// an address of its own, as `annuaire register sI PORT --address
// 127.x.y.z` would, and reports the rate and, given the server's pid, the
// growth of its RSS per registration: right after the last one, and once
// the server has been left without writes for rest (the registry gives
// memory back when writes stop after a burst, registry/release.go).
func register(url, tokenFile string, n, workers, pid int, rest time.Duration) error {
	tok, err := os.ReadFile(tokenFile)
	if err != nil {
		return err
	}
	token := strings.TrimSpace(string(tok))
	rss0, err := vmRSS(pid)
	if err != nil {
		return err
	}
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: workers}}
	var next atomic.Int64
	var wg sync.WaitGroup
	errs := make(chan error, workers)
	start := time.Now()
	for range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := int(next.Add(1) - 1); i < n; i = int(next.Add(1) - 1) {
				body := fmt.Sprintf(`{"name":"s%d","port":%d,"addresses":["127.%d.%d.%d"]}`, i%50, 7000+i%1000, 1+i>>16, (i>>8)&255, i&255)
				req, err := http.NewRequest(http.MethodPost, url+"/api/services", bytes.NewReader([]byte(body)))
				if err != nil {
					errs <- err
					return
				}
				req.Header.Set("Authorization", "Bearer "+token)
				resp, err := client.Do(req)
				if err != nil {
					errs <- err
					return
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != http.StatusCreated {
					errs <- fmt.Errorf("POST %s: %s: %s", body, resp.Status, bytes.TrimSpace(b))
					return
				}
			}
		}()
	}
	wg.Wait()
	close(errs)
	if err := <-errs; err != nil {
		return err
	}
	elapsed := time.Since(start)
	fmt.Printf("registered %d instances through the API in %.1f s (%.0f/s)", n, elapsed.Seconds(), float64(n)/elapsed.Seconds())
	if rss, err := vmRSS(pid); err == nil && pid > 0 {
		fmt.Printf("; server RSS %d → %d MiB (%d bytes per instance)", rss0>>20, rss>>20, (int64(rss)-int64(rss0))/int64(n))
		if rest > 0 {
			time.Sleep(rest)
			if rss, err = vmRSS(pid); err == nil {
				fmt.Printf(", %d MiB after %v without writes (%d bytes per instance)", rss>>20, rest, (int64(rss)-int64(rss0))/int64(n))
			}
		}
	}
	fmt.Println()
	return nil
}

// vmRSS reads a process's resident set from /proc, in bytes; 0 without
// a pid.
func vmRSS(pid int) (uint64, error) {
	if pid == 0 {
		return 0, nil
	}
	b, err := os.ReadFile("/proc/" + strconv.Itoa(pid) + "/status")
	if err != nil {
		return 0, err
	}
	_, rest, ok := bytes.Cut(b, []byte("VmRSS:"))
	if !ok {
		return 0, fmt.Errorf("no VmRSS in /proc/%d/status", pid)
	}
	line, _, _ := bytes.Cut(rest, []byte("\n"))
	kb, err := strconv.ParseUint(strings.TrimSpace(strings.TrimSuffix(strings.TrimSpace(string(line)), "kB")), 10, 64)
	return kb << 10, err
}
