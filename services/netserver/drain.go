package netserver

import (
	"cmp"
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// Drain is the graceful stop every server here shares. It tracks what is
// in flight — serve loops, connections, child processes, an event loop —
// each with two functions: stop asks it to finish (close a listener, wake a
// connection waiting for a request, signal a child) and force cuts it
// (close the connection, kill the child). Shutdown calls every stop, waits
// for everything tracked to be done, and calls every force if its context
// ends first. The zero Drain is ready to use; once started it stays
// stopped, so a server built on it serves once.
type Drain struct {
	stopping atomic.Bool // set by Start before it calls any stop

	mu      sync.Mutex // guards the fields below; stop and force run under it
	items   map[*drainItem]struct{}
	started chan struct{} // closed by Start
	forced  chan struct{} // closed when a Shutdown's context ends first
	pending sync.WaitGroup
}

type drainItem struct{ stop, force func() }

// Add tracks one thing in flight until the returned done is called (once,
// when it has ended; more calls do nothing). stop is called when the drain
// starts and force when it is cut short; either may be nil, and neither
// may call back into the Drain. Add returns false, tracking nothing, once
// the drain has started: the caller must not start what it wanted to
// track.
func (d *Drain) Add(stop, force func()) (done func(), ok bool) {
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.stopping.Load() {
		return nil, false
	}
	if d.items == nil {
		d.items = make(map[*drainItem]struct{})
	}
	it := &drainItem{stop: stop, force: force}
	d.items[it] = struct{}{}
	d.pending.Add(1)
	var once sync.Once
	return func() {
		once.Do(func() {
			d.mu.Lock()
			delete(d.items, it)
			d.mu.Unlock()
			d.pending.Done()
		})
	}, true
}

// Start begins the drain: Stopping turns true, Started is closed, and
// every stop is called. Later calls do nothing.
func (d *Drain) Start() {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.initLocked()
	if d.stopping.Swap(true) {
		return
	}
	close(d.started)
	for it := range d.items {
		if it.stop != nil {
			it.stop()
		}
	}
}

// Stopping reports whether the drain has started. A loop that renews a
// read deadline checks it after each renewal, so that a renewal can never
// undo the deadline in the past that a stop sets.
func (d *Drain) Stopping() bool { return d.stopping.Load() }

// Started is closed when the drain starts.
func (d *Drain) Started() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.initLocked()
	return d.started
}

// Forced is closed when a Shutdown's context ends before everything is
// done.
func (d *Drain) Forced() <-chan struct{} {
	d.mu.Lock()
	defer d.mu.Unlock()
	d.initLocked()
	return d.forced
}

// Shutdown starts the drain and waits until everything tracked is done:
// nil; or until ctx ends, when it forces what remains and returns ctx's
// error without waiting further, as net/http does: a forced connection is
// closed, and what still runs on it ends on its own. It may be called any
// number of times.
func (d *Drain) Shutdown(ctx context.Context) error {
	d.Start()
	done := make(chan struct{})
	go func() {
		d.pending.Wait()
		close(done)
	}()
	select {
	case <-done:
		return nil
	case <-ctx.Done():
	}
	select {
	case <-done:
		return nil
	default:
	}
	d.force()
	return ctx.Err()
}

// Run is a serve loop under the stop contract: it tracks loop as in
// flight (stop ends it: close its listener), shuts the drain down when
// ctx ends, giving the rest timeout (zero: DefaultDrainTimeout) to finish,
// and returns nil after ctx ended, ErrServerClosed after Shutdown, or
// loop's own error. After Shutdown it returns ErrServerClosed at once,
// without running loop.
func (d *Drain) Run(ctx context.Context, timeout time.Duration, stop func(), loop func() error) error {
	done, ok := d.Add(stop, nil)
	if !ok {
		return ErrServerClosed
	}
	finished := make(chan struct{})
	byCtx := context.AfterFunc(ctx, func() {
		defer close(finished)
		sctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), cmp.Or(max(timeout, 0), DefaultDrainTimeout))
		defer cancel()
		d.Shutdown(sctx)
	})
	err := loop()
	done()
	if !byCtx() {
		<-finished // the loop's end was ctx's: wait for the drain
		return nil
	}
	if d.Stopping() {
		return ErrServerClosed
	}
	return err
}

func (d *Drain) force() {
	d.mu.Lock()
	defer d.mu.Unlock()
	if closed(d.forced) {
		return
	}
	close(d.forced)
	for it := range d.items {
		if it.force != nil {
			it.force()
		}
	}
}

func (d *Drain) initLocked() {
	if d.started == nil {
		d.started = make(chan struct{})
		d.forced = make(chan struct{})
	}
}

// closed reports whether c is closed, without waiting.
func closed(c <-chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}
