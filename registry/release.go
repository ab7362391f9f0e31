package registry

import (
	"runtime/debug"
	"time"
)

// The runtime keeps the memory a burst of writes freed up to its next
// heap goal, twice the live heap, for as long as no more writes come:
// after 200,000 registrations through the API of `annuaire serve`, about
// 2.6 KB of RSS each for 0.9 KB live, and 1.6 KB once given back
// (bench/load -api; BENCHMARKS.md, "Registry cost per instance"). So once
// writes stop after enough of them, the registry gives it back, as Open
// does after a replay.
const (
	// releaseIdle is how long writes must have stopped: a burst that
	// goes on pushes the release back, and pays nothing for it.
	releaseIdle = time.Second
	// releaseMin is the fewest commits since the last release worth a
	// collection; past a quarter of the instances, it takes that many,
	// so that a release, one collection of the live heap, costs O(1)
	// per commit whatever the registry's size.
	releaseMin = 10000
)

// A releaser gives memory back to the OS once writes stop after a burst.
// Its fields are guarded by Registry.writeMu.
type releaser struct {
	commits int         // since the last release
	timer   *time.Timer // armed while a release is due
	idle    time.Duration
	min     int
	free    func() // debug.FreeOSMemory; tests count calls instead
}

func newReleaser() releaser {
	return releaser{idle: releaseIdle, min: releaseMin, free: debug.FreeOSMemory}
}

// releaseDue reports whether enough commits came since the last release, with
// writeMu held.
func (r *Registry) releaseDue() bool {
	return r.rel.commits >= max(r.rel.min, r.instances/4)
}

// committed counts a commit, with writeMu held, and arms the release
// once one is due, or pushes it back while commits keep coming.
func (r *Registry) committed() {
	r.rel.commits++
	if !r.releaseDue() {
		return
	}
	if r.rel.timer == nil {
		r.rel.timer = time.AfterFunc(r.rel.idle, r.release)
		return
	}
	r.rel.timer.Reset(r.rel.idle)
}

// release is the timer's: it gives memory back unless the registry is
// closed. A commit that comes while it runs only waits for writeMu, not
// for the collection.
func (r *Registry) release() {
	r.writeMu.Lock()
	if r.closed || !r.releaseDue() {
		r.writeMu.Unlock()
		return
	}
	r.rel.commits = 0
	free := r.rel.free
	r.writeMu.Unlock()
	free()
}

// stopRelease stops a pending release, with writeMu held, at Close.
func (r *Registry) stopRelease() {
	if r.rel.timer != nil {
		r.rel.timer.Stop()
	}
}
