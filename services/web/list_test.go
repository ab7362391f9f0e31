package web

import (
	"encoding/json"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"slices"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/registry"
)

// listRegistry has n instances whose IDs mix cases, on one host.
func listRegistry(t testing.TB, n int) *registry.Registry {
	t.Helper()
	reg := registry.New(1)
	if _, err := reg.Update(func(tx *registry.Tx) error {
		if err := tx.PutHost(registry.Host{Name: "box", Addrs: []netip.Addr{netip.MustParseAddr("192.0.2.1")}}); err != nil {
			return err
		}
		for i := range n {
			id := fmt.Sprintf("svc-%05d", i)
			if i%3 == 0 {
				id = strings.ToUpper(id)
			}
			if _, err := tx.PutInstance(registry.Instance{ID: id, Service: fmt.Sprintf("s%d", i%7), Proto: "tcp", Host: "box", Port: uint16(1000 + i)}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		t.Fatal(err)
	}
	return reg
}

// TestListPages: GET /api/services is every instance by ID, laid out as
// json.MarshalIndent lays out the list (what it answered before it was
// streamed); ?limit= pages it, each page naming the next in a Link
// header, and the pages together are the list.
func TestListPages(t *testing.T) {
	reg := listRegistry(t, 25)
	s := &Server{Registry: reg}
	base := startServer(t, s)

	snap := reg.Snapshot()
	var want []Service
	for inst := range snap.All() {
		want = append(want, s.view(snap, inst))
	}
	if !slices.IsSortedFunc(want, func(a, b Service) int { return strings.Compare(strings.ToLower(a.ID), strings.ToLower(b.ID)) }) {
		t.Fatal("All is not in ID order")
	}
	whole, _ := json.MarshalIndent(want, "", "  ")
	r := call(t, "GET", base+"/api/services", "", "")
	if r.status != 200 || string(r.body) != string(whole)+"\n" {
		t.Fatalf("GET /api/services: %d\n%s\nwant\n%s", r.status, r.body, whole)
	}
	if r.header.Get("Link") != "" {
		t.Errorf("a whole list with a Link: %q", r.header.Get("Link"))
	}

	var got []Service
	next, pages := "/api/services?limit=10", 0
	for next != "" {
		r := call(t, "GET", base+next, "", "")
		var page []Service
		if err := json.Unmarshal(r.body, &page); err != nil || r.status != 200 {
			t.Fatalf("GET %s: %d %v", next, r.status, err)
		}
		got = append(got, page...)
		pages++
		next = ""
		if link := r.header.Get("Link"); link != "" {
			u, rel, ok := strings.Cut(strings.TrimPrefix(link, "<"), ">; ")
			if !ok || rel != `rel="next"` {
				t.Fatalf("Link %q", link)
			}
			next = u
			if len(page) != 10 {
				t.Errorf("a page of %d before another", len(page))
			}
		}
	}
	if pages != 3 || len(got) != len(want) {
		t.Fatalf("%d pages of %d instances, want 3 of %d", pages, len(got), len(want))
	}
	for i := range got {
		if got[i].ID != want[i].ID {
			t.Errorf("paged item %d is %s, want %s", i, got[i].ID, want[i].ID)
		}
	}
	// after= compares as IDs do, without case.
	r = call(t, "GET", base+"/api/services?after=svc-00020", "", "")
	var tail []Service
	json.Unmarshal(r.body, &tail)
	if len(tail) != 4 || tail[0].ID != "SVC-00021" {
		t.Errorf("after=svc-00020: %d instances from %v", len(tail), tail)
	}
	for _, q := range []string{"limit=0", "limit=x", "limit=10001", "limit=-1"} {
		if r := call(t, "GET", base+"/api/services?"+q, "", ""); r.status != 400 {
			t.Errorf("?%s: %d", q, r.status)
		}
	}
	if r := call(t, "HEAD", base+"/api/services", "", ""); r.status != 200 || len(r.body) != 0 {
		t.Errorf("HEAD: %d, %d bytes", r.status, len(r.body))
	}
	if r := call(t, "GET", base+"/api/services?after=zzz", "", ""); string(r.body) != "[]\n" {
		t.Errorf("past the end: %q", r.body)
	}
}

// BenchmarkListServices is GET /api/services of a registry of 10,000
// instances: its allocations are per instance and its memory does not
// hold the list (it used to marshal the whole list into one buffer).
func BenchmarkListServices(b *testing.B) {
	reg := listRegistry(b, 10000)
	h := (&Server{Registry: reg}).Handler()
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/api/services", nil))
	}
}
