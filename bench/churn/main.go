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
// churn runs on dnsperf's CPU, so every microsecond it spends is one the
// DNS load does not get, and the server looks that much slower. It is
// therefore a minimal HTTP/1.1 client rather than net/http and
// encoding/json: each worker keeps one connection of its own (redialled
// after an error or a "Connection: close"), sends each request with one
// write from a buffer it reuses (the fixed part, token included, rendered
// once; the JSON body appended by hand), reads the answer through a
// reused bufio.Reader looking only at the status line, the headers that
// frame the body and a registration's id, and sleeps on a timer of its
// own. Its reads and writes are raw system calls (sock.go), which keeps
// the runtime's sysmon thread asleep. A write allocates only the id it
// keeps; what it still costs is mostly the kernel's: TCP, and waking up
// for the slot and for the answer.
//
// The service names (churn1..churn50) and hosts (churnh1.., one per
// worker) are not in bench/run.sh's query file: the DNS query mix is unchanged.
//
// It runs for -duration, or until SIGTERM or SIGINT, then prints one line
// (achieved rate, errors, latency of the writes) and removes what it
// created.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/signal"
	"slices"
	"strconv"
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
	if err := run(os.Stdout, os.Stderr, *api, *tokenFile, *rate, *workers, *live, *duration, *maxLag); err != nil {
		fmt.Fprintln(os.Stderr, "churn:", err)
		os.Exit(1)
	}
}

func run(stdout, stderr io.Writer, apiURL, tokenFile string, rate float64, workers, live int, duration, maxLag time.Duration) error {
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
	a, err := newAPI(apiURL, strings.TrimSpace(string(b)))
	if err != nil {
		return err
	}

	ctx, stop := signal.NotifyContext(context.Background(), syscall.SIGTERM, syscall.SIGINT)
	defer stop()
	if duration > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, duration)
		defer cancel()
	}

	p := &pacer{start: time.Now(), interval: time.Duration(float64(time.Second) / rate), maxLag: maxLag}
	errs := &errorLog{}
	ws := make([]*worker, workers)
	var wg sync.WaitGroup
	for i := range ws {
		ws[i] = newWorker(a, p, errs, i, live)
		wg.Go(func() { ws[i].loop(ctx) })
	}
	wg.Wait()
	elapsed := time.Since(p.start)

	var regs, deregs, failed int
	var lat []time.Duration
	for _, w := range ws {
		regs += w.regs
		deregs += w.deregs
		failed += w.errs
		lat = append(lat, w.lat...)
	}
	slices.Sort(lat)
	s := elapsed.Seconds()
	// One line, fields at fixed places for bench/run.sh.
	fmt.Fprintf(stdout, "churn: %.1f writes/s (%.1f reg/s + %.1f dereg/s, target %.0f) over %.1f s, %d errors, %d missed slots, p50 %.2f ms, p99 %.2f ms\n",
		float64(regs+deregs)/s, float64(regs)/s, float64(deregs)/s, rate, s, failed, p.missed.Load(),
		ms(quantile(lat, 0.50)), ms(quantile(lat, 0.99)))
	errs.report(stderr)

	// Leave the registry as it was: remove what is still registered, each
	// worker's on its own connection, still open.
	end := time.Now().Add(30 * time.Second)
	left := 0
	for _, w := range ws {
		for _, id := range append(w.ids, w.stale...) {
			deadline := time.Now().Add(requestTimeout)
			if deadline.After(end) {
				deadline = end
			}
			var se *statusError
			if err := w.conn.deregister(id, deadline); err != nil && !(errors.As(err, &se) && se.status == http.StatusNotFound) {
				left++
			}
		}
		w.conn.close()
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

// wait blocks on t, the caller's own timer, until the next slot that is
// not too late is due; false when ctx ended first.
func (p *pacer) wait(ctx context.Context, t *time.Timer) bool {
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
		t.Reset(d)
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
	p       *pacer
	errors  *errorLog
	conn    conn
	id      int
	live    int
	seq     int
	regHead []byte   // a registration's bytes up to the service name's number: the worker's own address and host
	reg     []byte   // the registration being sent
	ids     []string // registered by this worker, oldest first
	stale   []string // whose deregistration failed

	regs, deregs, errs int
	lat                []time.Duration
}

// newWorker gives worker number id a host of its own, churnh<id+1>, and
// an address in 10.250/16. annuaire names an instance
// service-proto-host-port and each registration takes the worker's next
// port: no two live instances share an id.
func newWorker(a *api, p *pacer, errs *errorLog, id, live int) *worker {
	n := id + 1
	// The fields in encoding/json's order for a map, which is how this
	// body used to be made: the server sees the same bytes as before.
	head := fmt.Appendf(nil, `{"addresses":["10.250.%d.%d"],"host":"churnh%d","name":"churn`, n>>8, n&255, n)
	return &worker{
		p: p, errors: errs, conn: conn{api: a}, id: id, live: live,
		regHead: head,
		ids:     make([]string, 0, live),
		lat:     make([]time.Duration, 0, 1024),
	}
}

func (w *worker) loop(ctx context.Context) {
	t := time.NewTimer(time.Hour)
	t.Stop()
	// A request in flight when ctx ends is let finish (within
	// requestTimeout), so that what it registered is known and removed.
	for w.p.wait(ctx, t) {
		t0 := time.Now()
		deadline := t0.Add(requestTimeout)
		var err error
		if len(w.ids) >= w.live {
			id := w.ids[0]
			w.ids = slices.Delete(w.ids, 0, 1)
			if err = w.conn.deregister(id, deadline); err == nil {
				w.deregs++
			} else {
				w.stale = append(w.stale, id) // retried at exit
			}
		} else {
			var id string
			if id, err = w.conn.register(w.next(), deadline); err == nil {
				w.ids = append(w.ids, id)
				w.regs++
			}
		}
		w.lat = append(w.lat, time.Since(t0))
		if err != nil {
			w.errs++
			w.errors.note(err)
		}
	}
}

// next is the next registration, valid until the next call: one of the
// 50 service names, spread so that the workers do not move in step.
func (w *worker) next() []byte {
	w.seq++
	k := (w.id*7919+w.seq)%names + 1
	b := append(w.reg[:0], w.regHead...)
	b = strconv.AppendInt(b, int64(k), 10)
	b = append(b, `","port":`...)
	b = strconv.AppendInt(b, int64(10000+w.seq%50000), 10)
	b = append(b, `,"ttl":60}`...)
	w.reg = b
	return b
}

// errorLog counts the workers' errors by method and status, keeping one
// message of each kind for the report.
type errorLog struct {
	mu    sync.Mutex
	kinds map[string]*errorKind
}

type errorKind struct {
	n       int
	example string
}

func (l *errorLog) note(err error) {
	kind, msg := "transport", err.Error()
	var se *statusError
	if errors.As(err, &se) {
		kind = fmt.Sprintf("%s HTTP %d", se.method, se.status)
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kinds == nil {
		l.kinds = map[string]*errorKind{}
	}
	e := l.kinds[kind]
	if e == nil {
		e = &errorKind{example: msg}
		l.kinds[kind] = e
	}
	e.n++
}

func (l *errorLog) report(w io.Writer) {
	l.mu.Lock()
	defer l.mu.Unlock()
	for kind, e := range l.kinds {
		fmt.Fprintf(w, "churn: %d × %s, such as: %.300s\n", e.n, kind, e.example)
	}
}

func quantile(sorted []time.Duration, q float64) time.Duration {
	if len(sorted) == 0 {
		return 0
	}
	return sorted[min(len(sorted)-1, int(q*float64(len(sorted))))]
}

func ms(d time.Duration) float64 { return float64(d) / float64(time.Millisecond) }
