package web

import (
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/annuaire/annuaire/registry"
)

// DefaultCheckInterval is the interval of a check that names none.
const DefaultCheckInterval = 10 * time.Second

// registration is the body of POST /api/services. Numbers are ints and the
// interval a string so that a bad value is reported against its field
// rather than as a Go type error.
type registration struct {
	Name      string            `json:"name"`
	Proto     string            `json:"proto"`
	Port      *int              `json:"port"`
	Host      string            `json:"host"`
	Instance  string            `json:"instance"`
	Addresses []string          `json:"addresses"`
	Priority  int               `json:"priority"`
	Weight    int               `json:"weight"`
	TTL       int               `json:"ttl"`
	TXT       map[string]string `json:"txt"`
	Check     *struct {
		Type     string `json:"type"`
		Target   string `json:"target"`
		Interval string `json:"interval"`
	} `json:"check"`
}

// errTooLarge marks a body over the cap.
var errTooLarge = errors.New("request body too large")

// decodeRegistration reads exactly one JSON object with known fields. Its
// errors name the field or say what is wrong with the body.
func decodeRegistration(r io.Reader) (*registration, error) {
	dec := json.NewDecoder(r)
	dec.DisallowUnknownFields()
	var reg registration
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
	reg, err := decodeRegistration(http.MaxBytesReader(w, r.Body, s.maxBody()))
	if err != nil {
		status := http.StatusBadRequest
		if errors.Is(err, errTooLarge) {
			status = http.StatusRequestEntityTooLarge
		}
		writeError(w, status, err.Error())
		return
	}
	remote, _ := remoteAddr(r.RemoteAddr)
	var id string
	_, err = s.Registry.Update(func(tx *registry.Tx) error {
		var err error
		id, err = s.apply(tx, reg, remote)
		return err
	})
	if err != nil {
		var fe *registry.FieldError
		if errors.As(err, &fe) || errors.Is(err, registry.ErrInvalid) {
			writeError(w, http.StatusBadRequest, err.Error())
			return
		}
		s.logger().Error("web: register", "name", reg.Name, "err", err)
		writeError(w, http.StatusInternalServerError, err.Error())
		return
	}
	snap := s.Registry.Snapshot()
	inst, ok := snap.Instance(id)
	if !ok { // deregistered between the write and this read
		writeJSON(w, http.StatusCreated, map[string]string{"id": id})
		return
	}
	v := s.view(snap, inst)
	s.logger().Info("web: registered", "id", id, "srv", v.Chain.SRV, "addresses", v.Addresses, "remote", r.RemoteAddr)
	w.Header().Set("Location", "/api/services/"+url.PathEscape(id))
	writeJSON(w, http.StatusCreated, v)
}

// apply turns a registration into rows, inside one transaction so that a
// rejected field leaves nothing behind. Defaults: proto tcp; the port the
// catalog gives the name; as host, the name of the first address; as
// addresses, the caller's own when neither they nor an existing host say.
func (s *Server) apply(tx *registry.Tx, reg *registration, remote netip.Addr) (string, error) {
	cat := s.catalog()
	name := strings.ToLower(strings.TrimSpace(reg.Name))
	if name == "" {
		return "", &registry.FieldError{Field: "name", Value: "", Reason: "required: the service name, such as echo"}
	}
	if err := registry.ValidServiceName(name); err != nil {
		return "", &registry.FieldError{Field: "name", Value: name, Reason: err.Error()}
	}
	wk, known := cat.Lookup(name)
	if known {
		name = wk.Name // mail is smtp, www is http
	}
	var port int
	switch {
	case reg.Port != nil:
		port = *reg.Port
	case known:
		port = int(wk.Port)
	default:
		return "", &registry.FieldError{Field: "port", Value: "", Reason: "required: " + name + " is not in the well-known catalog"}
	}
	if port < 1 || port > 65535 {
		return "", &registry.FieldError{Field: "port", Value: strconv.Itoa(port), Reason: "must be 1-65535"}
	}
	for _, f := range []struct {
		name string
		v    int
		max  int
	}{{"priority", reg.Priority, 65535}, {"weight", reg.Weight, 65535}, {"ttl", reg.TTL, registry.MaxTTL}} {
		if f.v < 0 || f.v > f.max {
			return "", &registry.FieldError{Field: f.name, Value: strconv.Itoa(f.v), Reason: "must be 0-" + strconv.Itoa(f.max)}
		}
	}
	if len(reg.Addresses) > MaxAddresses {
		return "", &registry.FieldError{Field: "addresses", Value: strconv.Itoa(len(reg.Addresses)) + " addresses", Reason: "at most " + strconv.Itoa(MaxAddresses)}
	}
	var addrs []netip.Addr
	for _, a := range reg.Addresses {
		ip, err := netip.ParseAddr(strings.TrimSpace(a))
		if err != nil {
			return "", &registry.FieldError{Field: "addresses", Value: a, Reason: "not an IP address"}
		}
		addrs = append(addrs, ip.Unmap().WithZone(""))
	}

	host := strings.ToLower(strings.TrimSuffix(strings.TrimSpace(reg.Host), "."))
	// A fully qualified name in our zone is the same host.
	host = strings.TrimSuffix(host, "."+strings.TrimSuffix(s.zone(), "."))
	existing, exists := (*registry.Host)(nil), false
	if host != "" {
		existing, exists = tx.Host(host)
	}
	if len(addrs) == 0 && !exists {
		if !remote.IsValid() {
			return "", &registry.FieldError{Field: "addresses", Value: "", Reason: "required: the caller's address is unknown"}
		}
		addrs = []netip.Addr{remote}
	}
	if host == "" {
		host = hostForAddr(addrs[0])
		existing, exists = tx.Host(host)
	}
	if len(addrs) > 0 {
		h := registry.Host{Name: host, Addrs: addrs, TTL: uint32(reg.TTL), Auto: true}
		if exists && !existing.Auto {
			h.Auto = false // made on purpose (by DNS UPDATE): not ours to collect
		}
		if err := tx.PutHost(h); err != nil {
			return "", err
		}
	} else if existing != nil {
		addrs = existing.Addrs
	}

	inst := registry.Instance{
		Service:  name,
		Proto:    strings.ToLower(strings.TrimSpace(reg.Proto)),
		Label:    reg.Instance,
		Host:     host,
		Port:     uint16(port),
		Priority: uint16(reg.Priority),
		Weight:   uint16(reg.Weight),
		TTL:      uint32(reg.TTL),
		TXT:      reg.TXT,
	}
	if c := reg.Check; c != nil {
		check, err := buildCheck(c.Type, c.Target, c.Interval, addrs, port)
		if err != nil {
			return "", err
		}
		inst.Check = check
	}
	return tx.PutInstance(inst)
}

func buildCheck(typ, target, interval string, addrs []netip.Addr, port int) (*registry.Check, error) {
	c := &registry.Check{Type: strings.ToLower(strings.TrimSpace(typ)), Target: strings.TrimSpace(target), Interval: registry.Duration(DefaultCheckInterval)}
	if interval != "" {
		d, err := time.ParseDuration(interval)
		if err != nil {
			return nil, &registry.FieldError{Field: "check.interval", Value: interval, Reason: "want a duration such as 1s or 500ms"}
		}
		c.Interval = registry.Duration(d)
	}
	var endpoint string
	if len(addrs) > 0 {
		endpoint = netip.AddrPortFrom(addrs[0], uint16(port)).String()
	}
	switch c.Type {
	case "tcp":
		if c.Target == "" {
			c.Target = endpoint
		}
		if _, p, err := net.SplitHostPort(c.Target); err != nil || p == "" {
			return nil, &registry.FieldError{Field: "check.target", Value: c.Target, Reason: "want HOST:PORT for a tcp check"}
		}
	case "http":
		if c.Target == "" && endpoint != "" {
			c.Target = "http://" + endpoint + "/"
		}
		u, err := url.Parse(c.Target)
		if err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return nil, &registry.FieldError{Field: "check.target", Value: c.Target, Reason: "want an http:// or https:// URL"}
		}
	case "ttl":
		if c.Target != "" {
			return nil, &registry.FieldError{Field: "check.target", Value: c.Target, Reason: "a ttl check has no target: the service sends heartbeats"}
		}
	}
	// The registry checks the type and the interval's bounds.
	return c, nil
}
