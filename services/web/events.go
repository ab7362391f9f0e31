package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"time"

	"github.com/annuaire/annuaire/registry"
)

// keepAlive is how often an idle event stream sends a comment, so that
// proxies keep it open and a vanished client is noticed.
const keepAlive = 15 * time.Second

// coalesceDelay is how long the event stream waits after a change for more
// changes before it sends the list again.
const coalesceDelay = 100 * time.Millisecond

// events streams the directory as Server-Sent Events (WHATWG HTML, section
// 9.2): one "services" event with the whole list now, and another each time
// the registry changes, each followed by a "chains" event with the chain of
// every service type as Lookup finds it (see Server.ChainLookup).
func (s *Server) events(w http.ResponseWriter, r *http.Request) {
	s.stream(w, r, func(snap *registry.Snapshot) error {
		b, err := json.Marshal(s.views(snap))
		if err != nil {
			return err
		}
		// id lets a reconnecting browser say where it was; the whole list
		// is sent again anyway, which is simpler than replaying changes.
		if _, err := fmt.Fprintf(w, "id: %d\nevent: services\ndata: %s\n\n", snap.Serial(), b); err != nil {
			return err
		}
		if err := http.NewResponseController(w).Flush(); err != nil {
			return err
		}
		// Then the chains, one Lookup per service type, shared with every
		// other stream: the directory shows at once, the pictures follow.
		set := s.chains(snap)
		if set == nil {
			return nil
		}
		if b, err = json.Marshal(set); err != nil {
			return err
		}
		if _, err := fmt.Fprintf(w, "event: chains\ndata: %s\n\n", b); err != nil {
			return err
		}
		return http.NewResponseController(w).Flush()
	})
}

// stream answers an event stream: send is called with the registry now,
// then after each change, until it fails, the client goes away or the
// server shuts down. The registry's change channel wakes it: no polling.
func (s *Server) stream(w http.ResponseWriter, r *http.Request, send func(*registry.Snapshot) error) {
	rc := http.NewResponseController(w)
	// The server's write timeout is for ordinary answers; this one lasts.
	if err := rc.SetWriteDeadline(time.Time{}); err != nil {
		writeError(w, http.StatusInternalServerError, "streaming not supported: "+err.Error())
		return
	}
	h := w.Header()
	h.Set("Content-Type", "text/event-stream")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Accel-Buffering", "no")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	if rc.Flush() != nil {
		return
	}

	tick := time.NewTicker(keepAlive)
	defer tick.Stop()
	coalesce := time.NewTimer(coalesceDelay)
	defer coalesce.Stop()
	for {
		snap := s.Registry.Snapshot()
		if send(snap) != nil {
			return
		}
		changed := snap.Changed()
		for waiting := true; waiting; {
			select {
			case <-changed:
				waiting = false
				// A burst of registrations makes one event, not hundreds.
				coalesce.Reset(coalesceDelay)
				select {
				case <-coalesce.C:
				case <-r.Context().Done():
					return
				case <-s.closing:
					return
				}
			case <-tick.C:
				if _, err := fmt.Fprint(w, ": keep-alive\n\n"); err != nil || rc.Flush() != nil {
					return
				}
			case <-r.Context().Done():
				return
			case <-s.closing:
				return
			}
		}
	}
}
