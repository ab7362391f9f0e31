package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net/http"
	"net/netip"
	"net/url"
	"strings"
	"time"

	"github.com/annuaire/annuaire/registry"
)

// Registration is the body of POST /api/services, as the CLI sends it.
// Absent fields take the registry's defaults (registry.Registration).
// Numbers are ints and the interval a string so that a bad value is
// reported against its field rather than as a Go type error.
type Registration struct {
	Name      string            `json:"name"`
	Proto     string            `json:"proto,omitempty"`
	Port      *int              `json:"port,omitempty"` // absent: the catalog's
	Host      string            `json:"host,omitempty"`
	Instance  registry.Octets   `json:"instance,omitempty"` // a string, or {"base64": "..."} for bytes that are not UTF-8
	Addresses []string          `json:"addresses,omitempty"`
	Priority  int               `json:"priority,omitempty"`
	Weight    int               `json:"weight,omitempty"`
	TTL       *int              `json:"ttl,omitempty"`      // absent: registry.DefaultTTL; 0 is a TTL
	TXT       registry.TXT      `json:"txt,omitempty"`      // ["txtvers=1", "duplex"], or {"key": "value"}
	Subtypes  []registry.Octets `json:"subtypes,omitempty"` // ["_printer"]; "printer" is "_printer"
	Check     *CheckRequest     `json:"check,omitempty"`
}

// CheckRequest is a Registration's health check.
type CheckRequest struct {
	Type     string `json:"type"`               // tcp, http or ttl
	Target   string `json:"target,omitempty"`   // HOST:PORT for tcp, a URL for http
	Interval string `json:"interval,omitempty"` // "1s"; absent: registry.DefaultCheckInterval
}

// errTooLarge marks a body over the cap.
var errTooLarge = errors.New("request body too large")

// decodeRegistration reads exactly one JSON object with known fields. Its
// errors name the field or say what is wrong with the body.
func decodeRegistration(r io.Reader) (*Registration, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var reg Registration
	if err := dec.Decode(&reg); err != nil {
		return nil, jsonError(err)
	}
	if _, err := dec.Token(); err != io.EOF {
		if err != nil {
			return nil, jsonError(err)
		}
		return nil, errors.New("body: data after the JSON object")
	}
	return &reg, nil
}

func jsonError(err error) error {
	var (
		syntax  *json.SyntaxError
		typ     *json.UnmarshalTypeError
		tooBig  *http.MaxBytesError
		unknown = "json: unknown field "
	)
	switch {
	case errors.As(err, &tooBig):
		return fmt.Errorf("%w: at most %d bytes", errTooLarge, tooBig.Limit)
	case errors.Is(err, io.EOF):
		return errors.New("body: empty, want a JSON object such as {\"name\":\"echo\",\"port\":7007}")
	case errors.Is(err, io.ErrUnexpectedEOF):
		return errors.New("body: JSON object cut short")
	case errors.As(err, &syntax):
		return fmt.Errorf("body: invalid JSON at byte %d: %s", syntax.Offset, strings.TrimPrefix(syntax.Error(), "json: "))
	case errors.As(err, &typ):
		field := typ.Field
		if field == "" {
			return fmt.Errorf("body: want a JSON object, got %s", typ.Value)
		}
		return &registry.FieldError{Field: field, Value: typ.Value, Reason: "want " + jsonKind(typ.Type.Kind().String())}
	case strings.HasPrefix(err.Error(), unknown):
		return fmt.Errorf("body: unknown field %s", strings.TrimPrefix(err.Error(), unknown))
	}
	return fmt.Errorf("body: %v", err)
}

func jsonKind(goKind string) string {
	switch goKind {
	case "int", "int64", "uint16":
		return "an integer"
	case "string":
		return "a string"
	case "map", "struct":
		return "an object"
	case "slice":
		return "an array"
	case "ptr":
		return "an integer"
	}
	return goKind
}

func (s *Server) register(w http.ResponseWriter, r *http.Request) {
	req, err := decodeRegistration(http.MaxBytesReader(w, r.Body, s.maxBody()))
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, errTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		writeError(w, status, err.Error())
		return
	}
	by := who(r)
	rr, err := s.registration(req, r.RemoteAddr)
	rr.Owner, rr.MaxOwned = by.Name, by.MaxInstances
	if err == nil {
		err = s.checkName(by, rr.Service)
	}
	var id string
	if err == nil {
		_, err = s.Registry.Update(func(tx *registry.Tx) error {
			var err error
			id, err = tx.Register(rr)
			return err
		})
	}
	if err != nil {
		if ownershipError(w, err) {
			return
		}
		s.updateError(w, "register", err)
		return
	}
	snap := s.Registry.Snapshot()
	inst, ok := snap.Instance(id)
	if !ok { // deregistered between the write and this read
		writeJSON(w, http.StatusCreated, map[string]string{"id": id})
		return
	}
	v := s.view(snap, inst)
	s.logger().Info("web: registered", "id", id, "srv", v.Chain.SRV, "addresses", v.Addresses, "by", by.owner(), "remote", r.RemoteAddr)
	w.Header().Set("Location", "/api/services/"+url.PathEscape(id))
	writeJSON(w, http.StatusCreated, v)
}

// registration reads a request as the registry's Registration: the
// addresses and the interval parsed, a name the catalog knows by an alias
// under its own (mail is smtp, www is http), a host named fully in the
// zone made relative, and the caller's address for the registry to use
// when the request gives none.
func (s *Server) registration(req *Registration, remote string) (registry.Registration, error) {
	rr := registry.Registration{
		Service:  s.catalog().Canonical(strings.TrimSpace(req.Name)),
		Proto:    req.Proto,
		Port:     req.Port,
		Host:     strings.TrimSpace(req.Host),
		Instance: string(req.Instance),
		Priority: req.Priority,
		Weight:   req.Weight,
		TTL:      req.TTL,
		TXT:      req.TXT,
	}
	// A final dot makes a name full (RFC 1035 section 5.1): one in the
	// zone is made relative, one outside it cannot be a host of the zone.
	full := strings.HasSuffix(rr.Host, ".")
	rr.Host = strings.TrimSuffix(rr.Host, ".")
	if z := "." + strings.TrimSuffix(s.zone(), "."); len(rr.Host) > len(z) && registry.SameName(rr.Host[len(rr.Host)-len(z):], z) {
		rr.Host = rr.Host[:len(rr.Host)-len(z)]
	} else if full {
		return rr, &registry.FieldError{Field: "host", Value: req.Host, Reason: "not in the zone " + s.zone() + ": give a host of the zone, relative (db) or full (db." + s.zone() + ")"}
	}
	for _, st := range req.Subtypes {
		rr.Subtypes = append(rr.Subtypes, string(st))
	}
	rr.From, _ = remoteAddr(remote)
	for _, a := range req.Addresses {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil {
			return rr, &registry.FieldError{Field: "addresses", Value: a, Reason: "not an IP address"}
		}
		rr.Addresses = append(rr.Addresses, ip)
	}
	if c := req.Check; c != nil {
		rr.Check = &registry.Check{Type: c.Type, Target: c.Target}
		if c.Interval != "" {
			d, err := time.ParseDuration(c.Interval)
			if err != nil {
				return rr, &registry.FieldError{Field: "check.interval", Value: c.Interval, Reason: "want a duration such as 1s or 500ms"}
			}
			rr.Check.Interval = registry.Duration(d)
		}
	}
	return rr, nil
}
