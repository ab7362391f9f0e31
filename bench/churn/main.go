// Command churn streams registrations and deregistrations into a running
// annuaire through its HTTP API at a steady rate, for bench/run.sh updates:
// how much of the DNS read rate is left while the registry changes.
//
// -rate is write requests per second, each a POST /api/services or a
// DELETE /api/services/{id}: every one is a registry Update (an HTTP
// request, a journalled commit and a new snapshot), which is what costs the
// DNS side. Each worker keeps at most -live instances of its
// own and, once it has them, deregisters its oldest before registering the
// next, so that the registry size stays bounded (and in steady state the
// writes alternate: half registrations, half deregistrations).
//
// Pacing is time-slotted and shared: write k is due at start + k/rate,
// whichever worker is free takes the next slot and sleeps until it is due.
// A slot that is already more than -max-lag late when taken is skipped and
// counted as missed rather than sent at once, so a stall (the server, or
// this process, descheduled) never turns into a burst.
//
// The service names (churn1..churn50) and hosts (churnh1.., one per
// worker) are not in bench/run.sh's query file: the DNS query mix is unchanged.
//
// It runs for -duration, or until SIGTERM or SIGINT, then prints one line
// (achieved rate, errors, latency of the writes) and removes what it
// created.
package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"os"
	"os/signal"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"
)

const names = 50 // service names churn1..churn50

func main() {
	api := flag.String("api", "http://127.0.0.1:15355", "annuaire's web API `URL`")
	tokenFile := flag.String("token-file", "", "`file` holding the API bearer token (DATA/token)")
	rate := flag.Float64("rate", 1000, "write requests (registrations + deregistrations) per `second`")
	workers := flag.Int("workers", 16, "concurrent `requests` at most")
	duration := flag.Duration("duration", 0, "how long to run (0: until SIGTERM or SIGINT)")
	live := flag.Int("live", 4, "instances each worker keeps registered at most")
	maxLag := flag.Duration("max-lag", 50*time.Millisecond, "skip a slot taken later than this after it was due")
	flag.Parse()
	if err := run(*api, *tokenFile, *rate, *workers, *live, *duration, *maxLag); err != nil {
		fmt.Fprintln(os.Stderr, "churn:", err)
		os.Exit(1)
	}
}

func run(api, tokenFile string, rate float64, workers, live int, duration, maxLag time.Duration) error {
	if tokenFile == "" {
		return errors.New("-token-file is required")
	}
	if rate <= 0 || workers < 1 || live < 1 {
		return errors.New("-rate, -workers and -live must be positive")
	}
	b, err := os.ReadFile(tokenFile)
	if err != nil {
		return err
	}
	c := &client{
		base:  strings.TrimSuffix(api, "/"),
		token: strings.TrimSpace(string(b)),
		http: &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{
			// one kept-alive connection per worker: no connect per write
			MaxIdleConns:        workers,
			MaxIdleConnsPerHost: workers,
			IdleConnTimeout:     time.Minute,
			DisableCompression:  true,
		}},
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}

	p := &pacer{start: time.Now(), interval: time.Duration(float64(time.Second) / rate), maxLag: maxLag}
	ws := make([]*worker, workers)
	var wg sync.WaitGroup
	for i := range ws {
		ws[i] = &worker{c: c, p: p, id: i, live: live}
		wg.Go(func() { ws[i].loop(ctx) })
	}
	wg.Wait()
	elapsed := time.Since(p.start)

	var regs, deregs, errs int
	var lat []time.Duration
	for _, w := range ws {
		regs += w.regs
		deregs += w.deregs
		errs += w.errs
		lat = append(lat, w.lat...)
	}
	slices.Sort(lat)
	s := elapsed.Seconds()
	// One line, fields at fixed places for bench/run.sh.
	fmt.Printf("churn: %.1f writes/s (%.1f reg/s + %.1f dereg/s, target %.0f) over %.1f s, %d errors, %d missed slots, p50 %.2f ms, p99 %.2f ms\n",
		float64(regs+deregs)/s, float64(regs)/s, float64(deregs)/s, rate, s, errs, p.missed.Load(),
		ms(quantile(lat, 0.50)), ms(quantile(lat, 0.99)))
	c.reportErrors()

	// Leave the registry as it was: remove what is still registered.
	cctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	left := 0
	for _, w := range ws {
		for _, id := range append(w.ids, w.stale...) {
			var se *statusError
			if err := c.deregister(cctx, id); err != nil && !(errors.As(err, &se) && se.status == http.StatusNotFound) {
				left++
			}
		}
	}
	if left > 0 {
		return fmt.Errorf("%d instances could not be removed at exit", left)
	}
	return nil
}

// pacer hands out write slots: slot k is due at start + k*interval.
type pacer struct {
	start    time.Time
	interval time.Duration
	maxLag   time.Duration
	next     atomic.Int64
	missed   atomic.Int64
}

// wait blocks until the next slot that is not too late is due; false when
// ctx ended first.
func (p *pacer) wait(ctx context.Context) bool {
	for {
		due := p.start.Add(time.Duration(p.next.Add(1)-1) * p.interval)
		d := time.Until(due)
		if d < -p.maxLag {
			p.missed.Add(1)
			continue
		}
		if d <= 0 {
			return ctx.Err() == nil
		}
		t := time.NewTimer(d)
		select {
		case <-ctx.Done():
			t.Stop()
			return false
		case <-t.C:
			return true
		}
	}
}

type worker struct {
	c     *client
	p     *pacer
	id    int
	live  int
	seq   int
	ids   []string // registered by this worker, oldest first
	stale []string // whose deregistration failed

	regs, deregs, errs int
	lat                []time.Duration
}

func (w *worker) loop(ctx context.Context) {
	for w.p.wait(ctx) {
		t0 := time.Now()
		var err error
		if len(w.ids) >= w.live {
			id := w.ids[0]
			w.ids = w.ids[1:]
			if err = w.c.deregister(ctx, id); err == nil {
				w.deregs++
			} else {
				w.stale = append(w.stale, id) // retried at exit
			}
		} else {
			var id string
			if id, err = w.c.register(ctx, w.body()); err == nil {
				w.ids = append(w.ids, id)
				w.regs++
			}
		}
		if ctx.Err() != nil {
			return // a request cut short at the end is not the server's error
		}
		w.lat = append(w.lat, time.Since(t0))
		if err != nil {
			w.errs++
			w.c.noteError(err)
		}
	}
}

// body is the next registration. annuaire names an instance
// service-proto-host-port, so each worker has a host of its own and each
// registration the next port: no two live instances share an id.
func (w *worker) body() []byte {
	w.seq++
	k := (w.id*7919+w.seq)%names + 1
	b, _ := json.Marshal(map[string]any{
		"name":      fmt.Sprintf("churn%d", k),
		"port":      10000 + w.seq%50000,
		"host":      fmt.Sprintf("churnh%d", w.id+1),
		"addresses": []string{fmt.Sprintf("10.250.%d.%d", (w.id+1)>>8, (w.id+1)&255)},
		"ttl":       60,
	})
	return b
}

type client struct {
	base, token string
	http        *http.Client

	mu     sync.Mutex
	errors map[string]*errorKind // by method and status, for the report
}

func (c *client) register(ctx context.Context, body []byte) (string, error) {
	var out struct {
		ID string `json:"id"`
	}
	b, err := c.do(ctx, http.MethodPost, "/api/services", body, http.StatusCreated)
	if err != nil {
		return "", err
	}
	if err := json.Unmarshal(b, &out); err != nil || out.ID == "" {
		return "", fmt.Errorf("POST /api/services: no id in the answer %.100q", b)
	}
	return out.ID, nil
}

func (c *client) deregister(ctx context.Context, id string) error {
	_, err := c.do(ctx, http.MethodDelete, "/api/services/"+url.PathEscape(id), nil, http.StatusNoContent)
	return err
}

// do sends one request and reads the whole answer, so that the connection
// goes back to the pool.
func (c *client) do(ctx context.Context, method, path string, body []byte, want int) ([]byte, error) {
	var rd io.Reader
	if body != nil {
		rd = bytes.NewReader(body)
	}
	req, err := http.NewRequestWithContext(ctx, method, c.base+path, rd)
	if err != nil {
		return nil, err
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	req.Header.Set("Authorization", "Bearer "+c.token)
	resp, err := c.http.Do(req)
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 1<<20))
	if err != nil {
		return nil, fmt.Errorf("%s %s: reading the answer: %w", method, path, err)
	}
	if resp.StatusCode != want {
		msg := strings.TrimSpace(string(b))
		var e struct{ Error string }
		if json.Unmarshal(b, &e) == nil && e.Error != "" {
			msg = e.Error
		}
		return nil, &statusError{method, resp.StatusCode, msg}
	}
	return b, nil
}

// statusError is an answer with another status than the one wanted.
type statusError struct {
	method string
	status int
	body   string
}

func (e *statusError) Error() string {
	return fmt.Sprintf("%s: HTTP %d: %s", e.method, e.status, e.body)
}

// noteError counts errors by method and status, keeping one message of
// each kind for the report.
func (c *client) noteError(err error) {
	kind, msg := "transport", err.Error()
	var se *statusError
	if errors.As(err, &se) {
		kind = fmt.Sprintf("%s HTTP %d", se.method, se.status)
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.errors == nil {
		c.errors = map[string]*errorKind{}
	}
	e := c.errors[kind]
	if e == nil {
		e = &errorKind{example: msg}
		c.errors[kind] = e
	}
	e.n++
}

type errorKind struct {
	n       int
	example string
}

func (c *client) reportErrors() {
	c.mu.Lock()
	defer c.mu.Unlock()
	for kind, e := range c.errors {
		fmt.Fprintf(os.Stderr, "churn: %d × %s, such as: %.300s\n", e.n, kind, e.example)
	}
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
