// Package lograte limits the log lines that others can cause: a line a
// remote packet triggers (a refused update or transfer, a NOTIFY) must not
// let a flood of packets flood the log (issue 18: 1.95 MB of spoofable
// packets wrote 6.45 MB of log). It is a slog.Handler that aggregates
// repeated records by message and source — the value of their "client"
// attribute — passing a burst of each, then one per interval, which says
// how many were dropped since the last one passed. Since a source may be
// spoofed, each message also has a bucket for all sources together, ten
// times the size: past it, lines from new sources are counted, not
// written.
package lograte

import (
	"context"
	"log/slog"
	"net"
	"sync"
	"time"
)

// SourceKey is the attribute that names a record's source: an address,
// whose port, if any, is left out (each packet may come from another).
const SourceKey = "client"

// maxKeys bounds the (message, source) pairs tracked; past it, those idle
// for a whole interval are forgotten, and if none is, all are.
const maxKeys = 4096

// New returns a handler that passes records to next: of each message from
// each source, burst at once and then one per every, like a token bucket;
// of each message from all sources, ten times as many. A record passed after
// some were dropped carries repeated=N (those of its source) and, if any,
// others=M (those of other sources dropped by the message's bucket).
func New(next slog.Handler, burst int, every time.Duration) slog.Handler {
	return &handler{next: next, s: &state{burst: float64(burst), every: every, now: time.Now,
		keys: make(map[key]*bucket), msgs: make(map[string]*bucket)}}
}

type handler struct {
	next   slog.Handler
	source string // the SourceKey attribute given by WithAttrs, if any
	s      *state // shared by the handlers WithAttrs and WithGroup derive
}

type key struct{ msg, source string }

type state struct {
	burst float64
	every time.Duration
	now   func() time.Time

	mu   sync.Mutex // guards the maps
	keys map[key]*bucket
	msgs map[string]*bucket
}

type bucket struct {
	tokens  float64
	last    time.Time
	dropped int
}

// take spends a token of b, which holds up to size and gains rate per
// every.
func (b *bucket) take(now time.Time, size, rate float64, every time.Duration) bool {
	b.tokens = min(size, b.tokens+rate*float64(now.Sub(b.last))/float64(every))
	b.last = now
	if b.tokens < 1 {
		b.dropped++
		return false
	}
	b.tokens--
	return true
}

func (h *handler) Enabled(ctx context.Context, l slog.Level) bool { return h.next.Enabled(ctx, l) }

func (h *handler) Handle(ctx context.Context, r slog.Record) error {
	source := h.source
	r.Attrs(func(a slog.Attr) bool {
		if a.Key == SourceKey {
			source = a.Value.String()
			return false
		}
		return true
	})
	repeated, others, ok := h.s.take(r.Message, hostOf(source))
	if !ok {
		return nil
	}
	if repeated > 0 || others > 0 {
		r = r.Clone()
		if repeated > 0 {
			r.AddAttrs(slog.Int("repeated", repeated))
		}
		if others > 0 {
			r.AddAttrs(slog.Int("others", others))
		}
	}
	return h.next.Handle(ctx, r)
}

// take decides whether a record of msg from source passes, and if so how
// many of its source and of other sources were dropped before it.
func (s *state) take(msg, source string) (repeated, others int, ok bool) {
	now := s.now()
	s.mu.Lock()
	defer s.mu.Unlock()
	k := key{msg, source}
	b := s.keys[k]
	if b == nil {
		if len(s.keys) >= maxKeys {
			s.forget(now)
		}
		b = &bucket{tokens: s.burst, last: now}
		s.keys[k] = b
	}
	if !b.take(now, s.burst, 1, s.every) {
		return 0, 0, false
	}
	m := s.msgs[msg]
	if m == nil {
		m = &bucket{tokens: 10 * s.burst, last: now}
		s.msgs[msg] = m
	}
	if !m.take(now, 10*s.burst, 10, s.every) {
		b.tokens++ // not this source's fault: its own count stays
		return 0, 0, false
	}
	repeated, b.dropped = b.dropped, 0
	others, m.dropped = m.dropped, 0
	return repeated, others, true
}

// forget drops the pairs idle for a whole interval, or all of them.
func (s *state) forget(now time.Time) {
	for k, b := range s.keys {
		if now.Sub(b.last) > s.every && b.dropped == 0 {
			delete(s.keys, k)
		}
	}
	if len(s.keys) >= maxKeys {
		clear(s.keys)
	}
}

// hostOf is addr without its port, if it has one.
func hostOf(addr string) string {
	if host, _, err := net.SplitHostPort(addr); err == nil {
		return host
	}
	return addr
}

func (h *handler) WithAttrs(attrs []slog.Attr) slog.Handler {
	c := &handler{next: h.next.WithAttrs(attrs), source: h.source, s: h.s}
	for _, a := range attrs {
		if a.Key == SourceKey {
			c.source = a.Value.String()
		}
	}
	return c
}

func (h *handler) WithGroup(name string) slog.Handler {
	return &handler{next: h.next.WithGroup(name), source: h.source, s: h.s}
}
