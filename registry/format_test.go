package registry

import (
	"slices"
	"testing"
)

// TestOpenV1: a data directory written by annuaire before TXT records kept
// their order and bytes (commit 23eb1bd and earlier: TXT as a JSON object)
// still opens, with what it served then. testdata/v1 holds its checkpoint
// (serial 1015: an ipp instance "Imprimante Salle 2.3 (étage)" whose TXT
// has UTF-8, a quote, a backslash and a key with an empty value; twelve
// echo instances, one since deleted; fifteen change sets of history) and
// its last segment (an http instance "My Web.v2" on a host made by hand,
// an echo instance gone critical), the zeros written ahead cut off.
func TestOpenV1(t *testing.T) {
	r, err := Open(copyDir(t, "testdata/v1"), Options{plainSync: true})
	if err != nil {
		t.Fatal(err)
	}
	defer r.Close()
	s := r.Snapshot()
	if s.Serial() != 1017 {
		t.Errorf("serial %d, want 1017", s.Serial())
	}
	if n := countInstances(s); n != 13 {
		t.Errorf("%d instances, want 13", n)
	}
	ipp, ok := s.ByLabel("tcp", "ipp", "Imprimante Salle 2.3 (étage)")
	if !ok {
		t.Fatal("no ipp instance")
	}
	// Served then in key order: the order kept.
	want := []string{"duplex=", "paper=A4", `path=C:\dir`, `q=say "hi"`, "txtvers=1", "utf=café"}
	if got := ipp.TXT; !slices.Equal(got, TXT(want)) {
		t.Errorf("ipp TXT %q, want %q", got, want)
	}
	if ipp.TTL != 60 {
		t.Errorf("ipp TTL %d, want 60", ipp.TTL)
	}
	if web, ok := s.ByLabel("tcp", "http", "my web.V2"); !ok || web.Host != "web" {
		t.Errorf("http instance: %+v, %v", web, ok)
	}
	if h, ok := s.Host("web"); !ok || h.Auto {
		t.Errorf("host web: %+v, %v", h, ok)
	}
	if inst, ok := s.Instance("echo-tcp-box-7005"); !ok || inst.Healthy() {
		t.Errorf("echo 7005: %+v, %v", inst, ok)
	}
	if _, ok := s.Instance("echo-tcp-box-7003"); ok {
		t.Error("echo 7003 came back")
	}
	if sets, ok := s.History(1000); !ok || len(sets) != 17 {
		t.Errorf("history from 1000: %d sets, %v", len(sets), ok)
	}
}
