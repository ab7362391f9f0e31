package registry

import (
	"errors"
	"fmt"
	"net/netip"
	"strconv"
	"strings"
)

// A Host is a name in the zone with its addresses.
type Host struct {
	Name  string       `json:"name"` // relative to the zone: "web" or "a.lab"
	Addrs []netip.Addr `json:"addresses"`
	TTL   uint32       `json:"ttl"` // seconds; 0 is a TTL (RFC 2181 section 8)
	// Auto marks a host created by an instance's registration: it goes away
	// with the last instance that points at it.
	Auto bool `json:"auto,omitempty"`
	// Owner is the name of the token whose registration created the
	// host, "" for the administrator: only they may change its addresses
	// (owner.go).
	Owner string `json:"owner,omitempty"`
}

func fillHost(h *Host) error {
	h.Name = FoldName(strings.TrimSuffix(h.Name, "."))
	if err := ValidHostName(h.Name); err != nil {
		return &FieldError{"host", h.Name, err.Error()}
	}
	h.Owner = FoldName(h.Owner)
	if err := validOwner(h.Owner); err != nil {
		return err
	}
	if h.TTL > MaxTTL {
		return &FieldError{"ttl", strconv.Itoa(int(h.TTL)), "must be at most " + strconv.Itoa(MaxTTL)}
	}
	seen := make(map[netip.Addr]bool, len(h.Addrs))
	addrs := make([]netip.Addr, 0, len(h.Addrs))
	for _, a := range h.Addrs {
		if !a.IsValid() {
			return &FieldError{"addresses", a.String(), "not an IP address"}
		}
		a = a.Unmap().WithZone("")
		if !seen[a] {
			seen[a] = true
			addrs = append(addrs, a)
		}
	}
	h.Addrs = addrs
	return nil
}

// ValidHostName checks a host name relative to the zone: dot-separated
// labels of 1 to 63 letters, digits, hyphens and underscores, 200 bytes in
// all so that the name still fits 255 bytes once the zone is appended
// (RFC 1035 section 2.3.4).
func ValidHostName(s string) error {
	if s == "" {
		return errors.New("empty")
	}
	if len(s) > 200 {
		return errors.New("longer than 200 bytes")
	}
	for _, label := range strings.Split(s, ".") {
		if label == "" || len(label) > 63 {
			return errors.New("labels must be 1 to 63 bytes (RFC 1035 section 2.3.4)")
		}
		if label[0] == '-' || label[len(label)-1] == '-' {
			return errors.New("labels may not start or end with a hyphen (RFC 952)")
		}
		for i := 0; i < len(label); i++ {
			c := label[i]
			if !(c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || c >= '0' && c <= '9' || c == '-' || c == '_') {
				return fmt.Errorf("%q is not a letter, digit, hyphen or underscore", c)
			}
		}
	}
	return nil
}

// A Host is a Row (change.go).

func (h *Host) kind() string        { return "host" }
func (h *Host) table() string       { return tableHosts }
func (h *Host) check() error        { return fillHost(h) }
func (h *Host) put(tx *Tx) error    { return tx.PutHost(*h) }
func (h *Host) remove(tx *Tx) error { return tx.DeleteHost(h.Name) }

func (h *Host) restore(tx *Tx) error {
	old, _ := tx.Host(h.Name)
	if err := tx.hostChanging(h.Name, old, h); err != nil {
		return err
	}
	if err := tx.txn.Insert(tableHosts, h); err != nil {
		return fmt.Errorf("insert host %s: %w", h.Name, err)
	}
	return nil
}

func (h *Host) drop(tx *Tx) error {
	if old, ok := tx.Host(h.Name); ok {
		if err := tx.hostChanging(h.Name, old, nil); err != nil {
			return err
		}
		if err := tx.txn.Delete(tableHosts, old); err != nil {
			return fmt.Errorf("delete host %s: %w", h.Name, err)
		}
	}
	return nil
}

// derived: the stamps of the networks whose PTR records the change
// touches (reverse.go).
func (*Host) derived(r *reader, keys []Key, before, after Row) []Key {
	b, _ := before.(*Host)
	a, _ := after.(*Host)
	return r.stampKeys(keys, b, a)
}
