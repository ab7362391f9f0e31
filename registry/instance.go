package registry

import (
	"encoding/json"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"
)

// Health is an instance's state as its check last saw it. Only passing
// instances are handed out by DNS. It is a byte, written as "passing" or
// "critical" (its text, in JSON too): a string's 16 bytes made the row a
// size class larger. The zero Health is unset: a row is filled in
// passing (fillInstance).
type Health uint8

const (
	Passing Health = iota + 1
	Critical
)

// String is the health's name, "" for the zero Health.
func (h Health) String() string {
	switch h {
	case Passing:
		return "passing"
	case Critical:
		return "critical"
	case 0:
		return ""
	}
	return "health(" + strconv.Itoa(int(h)) + ")"
}

func (h Health) MarshalText() ([]byte, error) { return []byte(h.String()), nil }

func (h *Health) UnmarshalText(b []byte) error {
	switch string(b) {
	case "passing":
		*h = Passing
	case "critical":
		*h = Critical
	case "":
		*h = 0
	default:
		return &FieldError{"health", string(b), "must be passing or critical"}
	}
	return nil
}

// A Check says how the registry learns whether an instance is alive.
type Check struct {
	Type     string   `json:"type"`             // "tcp", "http" or "ttl"
	Target   string   `json:"target,omitempty"` // HOST:PORT for tcp, a URL for http
	Interval Duration `json:"interval"`         // between checks; for ttl, the heartbeat deadline
}

// Duration is a time.Duration written as "1s" in JSON.
type Duration time.Duration

func (d Duration) MarshalText() ([]byte, error) { return []byte(time.Duration(d).String()), nil }

func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return err
	}
	*d = Duration(v)
	return nil
}

// An Instance is one process serving Service over Proto at Host:Port. In DNS
// it is _Service._Proto SRV Priority Weight Port Host, and, for DNS-SD,
// Label._Service._Proto with SRV and TXT.
//
// Its JSON is the journal's: the API has its own (package web).
type Instance struct {
	ID      string `json:"id"`
	Service string `json:"name"`  // "echo": an RFC 6335 service name, without the underscore
	Proto   string `json:"proto"` // "tcp" or "udp"
	// Label is the RFC 6763 <Instance>: one label of any bytes but ASCII
	// controls, usually UTF-8 ("Imprimante Salle 2.3 (étage)"), kept as
	// given; it compares as names do (FoldName).
	Label    string `json:"instance"`
	Host     string `json:"host"` // target host, relative to the zone
	Port     uint16 `json:"port"`
	Priority uint16 `json:"priority"`
	Weight   uint16 `json:"weight"`
	// idKeyed says that the byte after ID's, in the same string, is its
	// index key's terminator, and ID is folded: the key is ID's bytes and
	// that one (instanceIDIndex), not a copy of them. Only fillInstance
	// sets it, for the ID it makes, and it resets it for any other. (In
	// the padding after Weight: the row is no larger.)
	idKeyed bool
	TTL     uint32 `json:"ttl"` // seconds; 0 is a TTL (RFC 2181 section 8)
	TXT     TXT    `json:"txt,omitempty"`
	// Subtypes are the instance's DNS-SD subtypes (RFC 6763 section 7.1):
	// labels, usually "_printer", under which _printer._sub._S._P lists
	// the instance. They compare as names do.
	Subtypes []string `json:"subtypes,omitempty"`
	Check    *Check   `json:"check,omitempty"`
	Health   Health   `json:"health"`
	// Owner is the name of the token that registered the instance, ""
	// for the administrator (owner.go).
	Owner string `json:"owner,omitempty"`
}

// instanceJSON is an Instance without its JSON methods.
type instanceJSON Instance

// MarshalJSON writes the label and subtypes as Octets: exactly, whatever
// their bytes.
func (inst Instance) MarshalJSON() ([]byte, error) {
	var subs []Octets
	for _, s := range inst.Subtypes {
		subs = append(subs, Octets(s))
	}
	return json.Marshal(struct {
		*instanceJSON
		Label    Octets   `json:"instance"`
		Subtypes []Octets `json:"subtypes,omitempty"`
	}{(*instanceJSON)(&inst), Octets(inst.Label), subs})
}

func (inst *Instance) UnmarshalJSON(b []byte) error {
	v := struct {
		*instanceJSON
		Label    Octets   `json:"instance"`
		Subtypes []Octets `json:"subtypes"`
	}{instanceJSON: (*instanceJSON)(inst)}
	if err := json.Unmarshal(b, &v); err != nil {
		return err
	}
	inst.Label = string(v.Label)
	inst.Subtypes = nil
	for _, s := range v.Subtypes {
		inst.Subtypes = append(inst.Subtypes, string(s))
	}
	return nil
}

// Healthy reports whether DNS may hand the instance out.
func (i *Instance) Healthy() bool { return i.Health != Critical }

func fillInstance(inst *Instance) error {
	inst.idKeyed = false
	inst.Service = FoldName(inst.Service)
	inst.Proto = FoldName(inst.Proto)
	inst.Host = FoldName(strings.TrimSuffix(inst.Host, "."))
	if err := ValidServiceName(inst.Service); err != nil {
		return &FieldError{"name", inst.Service, err.Error()}
	}
	if inst.Proto == "" {
		inst.Proto = "tcp"
	}
	if inst.Proto != "tcp" && inst.Proto != "udp" {
		return &FieldError{"proto", inst.Proto, "must be tcp or udp"}
	}
	if err := ValidHostName(inst.Host); err != nil {
		return &FieldError{"host", inst.Host, err.Error()}
	}
	if inst.Port == 0 {
		return &FieldError{"port", "0", "must be 1-65535"}
	}
	if inst.ID == "" {
		// Made of folded names, and made with its index key's terminator
		// after it (idKeyed). The service and the protocol are its first
		// two parts, and hold no string of their own (a request's JSON
		// decoder made theirs).
		id := inst.Service + "-" + inst.Proto + "-" + inst.Host + "-" + strconv.Itoa(int(inst.Port)) + "\x00"
		s, p := len(inst.Service), len(inst.Proto)
		inst.ID, inst.idKeyed = id[:len(id)-1], true
		inst.Service, inst.Proto = inst.ID[:s], inst.ID[s+1:s+1+p]
		if inst.Label == "" {
			// The default label is the default ID's end, and the host
			// within it: the five names of a registration that gives
			// neither, as the API's usually do, are one string for as
			// long as the instance lives.
			at := s + p + 2
			inst.Label, inst.Host = inst.ID[at:], inst.ID[at:at+len(inst.Host)]
		}
	}
	if inst.Label == "" {
		inst.Label = inst.Host + "-" + strconv.Itoa(int(inst.Port))
	}
	if len(inst.Label) > 63 {
		return &FieldError{"instance", inst.Label, "longer than 63 bytes (RFC 6763 section 4.1.1)"}
	}
	for i := 0; i < len(inst.Label); i++ {
		if c := inst.Label[i]; c < 0x20 || c == 0x7f {
			return &FieldError{"instance", inst.Label, "control characters are not allowed (RFC 6763 section 4.1.1)"}
		}
	}
	if len(inst.ID) > 255 || strings.ContainsAny(inst.ID, "/ \t\r\n") {
		return &FieldError{"id", inst.ID, "must be at most 255 bytes without slashes or spaces"}
	}
	if inst.TTL > MaxTTL {
		return &FieldError{"ttl", strconv.Itoa(int(inst.TTL)), "must be at most " + strconv.Itoa(MaxTTL)}
	}
	if err := inst.TXT.check(); err != nil {
		return err
	}
	if len(inst.Subtypes) > MaxSubtypes {
		return &FieldError{"subtypes", strconv.Itoa(len(inst.Subtypes)) + " subtypes", "at most " + strconv.Itoa(MaxSubtypes)}
	}
	for i, st := range inst.Subtypes {
		if st == "" || len(st) > 63 || strings.ContainsFunc(st, func(r rune) bool { return r < 0x20 || r == 0x7f }) {
			return &FieldError{"subtypes", st, "a subtype is one label: 1 to 63 bytes, no control characters (RFC 6763 section 7.2)"}
		}
		if slices.ContainsFunc(inst.Subtypes[:i], func(o string) bool { return SameName(o, st) }) {
			return &FieldError{"subtypes", st, "given twice"}
		}
	}
	if inst.Check != nil {
		switch inst.Check.Type {
		case "tcp", "http", "ttl":
		default:
			return &FieldError{"check.type", inst.Check.Type, "must be tcp, http or ttl"}
		}
		if inst.Check.Interval < Duration(100*time.Millisecond) || inst.Check.Interval > Duration(24*time.Hour) {
			return &FieldError{"check.interval", time.Duration(inst.Check.Interval).String(), "must be between 100ms and 24h"}
		}
	}
	inst.Owner = FoldName(inst.Owner)
	if err := validOwner(inst.Owner); err != nil {
		return err
	}
	if inst.Health == 0 {
		inst.Health = Passing
	}
	if inst.Health != Passing && inst.Health != Critical {
		return &FieldError{"health", inst.Health.String(), "must be passing or critical"}
	}
	return nil
}

// ValidServiceName checks the syntax of RFC 6335 section 5.1: 1 to 15
// letters, digits and hyphens, at least one letter, no leading, trailing or
// double hyphen.
func ValidServiceName(s string) error {
	switch {
	case s == "":
		return errors.New("empty")
	case len(s) > 15:
		return errors.New("longer than 15 characters (RFC 6335 section 5.1)")
	case s[0] == '-' || s[len(s)-1] == '-' || strings.Contains(s, "--"):
		return errors.New("hyphens may not start, end or double (RFC 6335 section 5.1)")
	}
	letter := false
	for _, r := range s {
		switch {
		case r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z':
			letter = true
		case r >= '0' && r <= '9' || r == '-':
		default:
			return fmt.Errorf("%q is not a letter, digit or hyphen (RFC 6335 section 5.1)", r)
		}
	}
	if !letter {
		return errors.New("needs at least one letter (RFC 6335 section 5.1)")
	}
	return nil
}

func printableASCII(s string) bool {
	for i := 0; i < len(s); i++ {
		if s[i] < 0x20 || s[i] > 0x7e {
			return false
		}
	}
	return true
}

// An Instance is a Row (change.go).

func (inst *Instance) kind() string        { return "instance" }
func (inst *Instance) table() string       { return tableInstances }
func (inst *Instance) check() error        { return fillInstance(inst) }
func (inst *Instance) remove(tx *Tx) error { return tx.DeleteInstance(inst.ID) }
func (inst *Instance) put(tx *Tx) error {
	_, err := tx.PutInstance(*inst)
	return err
}

func (inst *Instance) restore(tx *Tx) error {
	if err := inst.drop(tx); err != nil {
		return err
	}
	// The label index is unique (instancesTable), and memdb would let a
	// second row take the first's entry: a journal that gives two
	// instances one label was not written by a Tx, whose PutInstance
	// refuses it, and is refused here the same way.
	if other, ok := tx.ByLabel(inst.Proto, inst.Service, inst.Label); ok && !SameName(other.ID, inst.ID) {
		return &FieldError{"instance", inst.Label, "already used by " + other.ID}
	}
	return tx.insertInstance(inst)
}

func (inst *Instance) drop(tx *Tx) error {
	if old, ok := tx.Instance(inst.ID); ok {
		return tx.removeInstance(old)
	}
	return nil
}

// derived: the rows the registry derives from instances (a service type's
// counts, a host's reference count) are written when an instance comes,
// goes, moves to another type or host, or, for the type, changes health;
// every other change leaves them as they were.
func (*Instance) derived(r *reader, keys []Key, before, after Row) []Key {
	b, _ := before.(*Instance)
	a, _ := after.(*Instance)
	sameType := b != nil && a != nil && b.Proto == a.Proto && b.Service == a.Service
	sameHost := b != nil && a != nil && b.Host == a.Host
	for _, inst := range []*Instance{b, a} {
		if inst == nil {
			continue
		}
		if !sameType || b.Healthy() != a.Healthy() {
			keys = r.rowKeys(keys, tableTypes, &ServiceType{Proto: inst.Proto, Service: inst.Service})
		}
		if !sameHost {
			keys = r.rowKeys(keys, tableHostRefs, &hostRef{Name: inst.Host})
		}
		if inst.Owner != "" && (b == nil || a == nil || b.Owner != a.Owner) {
			keys = r.rowKeys(keys, tableOwners, &ownerCount{Name: inst.Owner})
		}
	}
	return keys
}
