package web

import (
	"context"
	"encoding/json"
	"errors"
	"net/http"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/resolver"
	"github.com/annuaire/annuaire/services/mail"
)

// ErrorBody is the shape of every API error: {"error": "..."}.
type ErrorBody struct {
	Error string `json:"error"`
}

func writeJSON(w http.ResponseWriter, status int, v any) {
	b, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		status = http.StatusInternalServerError
		b, _ = json.Marshal(ErrorBody{"encoding the answer: " + err.Error()})
	}
	w.Header().Set("Content-Type", "application/json; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.Header().Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(status)
	w.Write(append(b, '\n'))
}

func writeError(w http.ResponseWriter, status int, msg string) {
	writeJSON(w, status, ErrorBody{msg})
}

// fullRetry is the Retry-After of a write refused for a full disk: the
// journal retries by itself, and a client may too.
const fullRetry = "5"

// updateError answers a registry write that failed: 400 for a field the
// registry refused, 507 Insufficient Storage when the journal's disk is
// full (RFC 4918 section 11.5; with Retry-After, since writes resume by
// themselves once there is space), 409 Conflict when the directory holds
// its maximum of instances, 500 for anything else, which is logged. A
// full disk is logged once by the journal, not per request.
//
// The maximum is 409 (RFC 9110 section 15.5.10: the request conflicts
// with the state of the target, a conflict the user may resolve and
// resubmit): a deregistration makes room, as it does for a heartbeat
// refused here for the instance's state. Not 429, whose Retry-After
// promises that waiting helps (it does not); not 507, which says the
// disk is full and comes back by itself; not 403, which says the token
// may not, while any token would be refused the same.
func (s *Server) updateError(w http.ResponseWriter, op string, err error) {
	var fe *registry.FieldError
	switch {
	case errors.As(err, &fe) || errors.Is(err, registry.ErrInvalid):
		writeError(w, http.StatusBadRequest, err.Error())
	case errors.Is(err, registry.ErrTooMany):
		writeError(w, http.StatusConflict, err.Error())
	case errors.Is(err, registry.ErrFull):
		w.Header().Set("Retry-After", fullRetry)
		writeError(w, http.StatusInsufficientStorage, err.Error())
	default:
		s.logger().Error("web: "+op, "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
	}
}

func methodNotAllowed(allow string) http.HandlerFunc {
	return func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Allow", allow)
		writeError(w, http.StatusMethodNotAllowed, "method "+r.Method+" not allowed on "+r.URL.Path+"; allowed: "+allow)
	}
}

// withHeaders gives what the prepared assets do not answer (directory
// listings, redirects, 404s under /static/) the page's policy headers.
func withHeaders(h http.Handler) http.Handler {
	policy := policyFields()
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		setFields(w.Header(), policy)
		h.ServeHTTP(w, r)
	})
}

func (s *Server) healthz(w http.ResponseWriter, r *http.Request) {
	snap := s.Registry.Snapshot()
	writeJSON(w, http.StatusOK, map[string]any{"status": "ok", "zone": s.zone(), "serial": snap.Serial()})
}

// MaxPageLimit bounds the limit of a page of GET /api/services.
const MaxPageLimit = 10000

// listServices answers GET /api/services: every instance, ordered by ID
// without case, as a JSON array written an instance at a time, so that
// its memory does not grow with the directory. ?after=ID starts after
// that ID; ?limit=N answers at most N, and when more follow, a Link
// header (RFC 8288) with rel="next" names the next page.
func (s *Server) listServices(w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	after, limit := q.Get("after"), -1
	if v := q.Get("limit"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 1 || n > MaxPageLimit {
			writeError(w, http.StatusBadRequest, "limit "+quote(v)+": want 1-"+strconv.Itoa(MaxPageLimit))
			return
		}
		limit = n
	}
	snap := s.Registry.Snapshot()
	page := func(yield func(*registry.Instance) bool) {
		n := 0
		for inst := range snap.InstancesAfter(after) {
			if n == limit || !yield(inst) {
				return
			}
			n++
		}
	}
	if limit > 0 {
		// A first pass, without drawing the views, finds whether another
		// page follows: the headers go before the body.
		var last string
		n := 0
		for inst := range snap.InstancesAfter(after) {
			if n == limit {
				w.Header().Set("Link", "</api/services?after="+url.QueryEscape(last)+"&limit="+strconv.Itoa(limit)+`>; rel="next"`)
				break
			}
			last = inst.ID
			n++
		}
	}
	h := w.Header()
	h.Set("Content-Type", "application/json; charset=utf-8")
	h.Set("Cache-Control", "no-store")
	h.Set("X-Content-Type-Options", "nosniff")
	w.WriteHeader(http.StatusOK)
	if r.Method == http.MethodHead {
		return
	}
	// The layout json.MarshalIndent gives the whole list.
	sep := []byte("[\n  ")
	for inst := range page {
		b, err := json.MarshalIndent(s.view(snap, inst), "  ", "  ")
		if err != nil {
			return
		}
		if _, err := w.Write(append(sep, b...)); err != nil {
			return
		}
		sep = []byte(",\n  ")
	}
	if sep[0] == '[' {
		w.Write([]byte("[]\n"))
		return
	}
	w.Write([]byte("\n]\n"))
}

func (s *Server) getService(w http.ResponseWriter, r *http.Request) {
	snap := s.Registry.Snapshot()
	inst, ok := snap.Instance(r.PathValue("id"))
	if !ok {
		writeError(w, http.StatusNotFound, "no instance with id "+quote(r.PathValue("id")))
		return
	}
	writeJSON(w, http.StatusOK, s.view(snap, inst))
}

func (s *Server) deregister(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	by := who(r)
	_, err := s.Registry.Update(func(tx *registry.Tx) error { return tx.Deregister(id, by.Name) })
	if err != nil {
		if ownershipError(w, err) {
			return
		}
		if errors.Is(err, registry.ErrNotFound) {
			writeError(w, http.StatusNotFound, "no instance with id "+quote(id))
			return
		}
		s.updateError(w, "deregister", err)
		return
	}
	s.logger().Info("web: deregistered", "id", id, "by", by.owner(), "remote", r.RemoteAddr)
	w.WriteHeader(http.StatusNoContent)
}

func (s *Server) heartbeat(w http.ResponseWriter, r *http.Request) {
	id := r.PathValue("id")
	if s.Health == nil {
		writeError(w, http.StatusNotFound, "heartbeats are not accepted by this server")
		return
	}
	inst, ok := s.Registry.Snapshot().Instance(id)
	if !ok {
		writeError(w, http.StatusNotFound, "no instance with id "+quote(id))
		return
	}
	if ownershipError(w, inst.MayChange(who(r).Name)) {
		return
	}
	if err := s.Health(id); err != nil {
		switch {
		case errors.Is(err, registry.ErrNotFound):
			writeError(w, http.StatusNotFound, err.Error())
		case errors.Is(err, registry.ErrInvalid):
			writeError(w, http.StatusBadRequest, err.Error())
		default:
			// Typically an instance without a ttl check: the request is
			// well formed but does not fit the instance's state.
			writeError(w, http.StatusConflict, err.Error())
		}
		return
	}
	snap := s.Registry.Snapshot()
	inst, ok = snap.Instance(id)
	if !ok {
		writeError(w, http.StatusNotFound, "no instance with id "+quote(id))
		return
	}
	writeJSON(w, http.StatusOK, s.view(snap, inst))
}

func (s *Server) lookup(w http.ResponseWriter, r *http.Request) {
	trace, status, err := s.lookupName(r.Context(), r.URL.Query().Get("name"))
	if err != nil {
		writeError(w, status, err.Error())
		return
	}
	// A failed lookup is still a trace worth drawing: its error is inside.
	writeJSON(w, http.StatusOK, trace)
}

// lookupName runs a name typed by a user through Lookup, for /api/lookup
// and the page's lookup box. A lookup that failed with a trace is a
// trace, its error inside; an error without a trace comes with the HTTP
// status it means.
func (s *Server) lookupName(ctx context.Context, name string) (*resolver.Chain, int, error) {
	name = strings.TrimSpace(name)
	switch {
	case name == "":
		return nil, http.StatusBadRequest, errors.New("missing query parameter name: /api/lookup?name=echo")
	case len(name) > 255:
		return nil, http.StatusBadRequest, errors.New("name: longer than 255 bytes (RFC 1035 section 3.1)")
	case s.Lookup == nil:
		return nil, http.StatusServiceUnavailable, errors.New("lookups are not available on this server")
	}
	ctx, cancel := context.WithTimeout(ctx, 10*time.Second)
	defer cancel()
	// Each lookup holds sockets: they are counted (Descriptors).
	select {
	case s.lookups <- struct{}{}:
		defer func() { <-s.lookups }()
	case <-ctx.Done():
		return nil, http.StatusServiceUnavailable, errors.New("too many lookups at once; try again")
	}
	trace, err := s.Lookup(ctx, name)
	if trace == nil {
		if err == nil {
			err = errors.New("the lookup returned no trace")
		}
		return nil, http.StatusBadGateway, err
	}
	return trace, http.StatusOK, nil
}

func (s *Server) messages(w http.ResponseWriter, r *http.Request) {
	list := []mail.Message{} // [] rather than null when there is none
	if s.Messages != nil {
		list = append(list, s.Messages()...)
	}
	writeJSON(w, http.StatusOK, list)
}

func quote(s string) string {
	b, _ := json.Marshal(s)
	return string(b)
}
