package main

import (
	"strings"
	"testing"
)

// TestFitFDs: the caps of the servers add up to no more than the
// descriptor limit, scaled down together when it is low, and a limit too
// low to serve at all is an error that says what to do.
func TestFitFDs(t *testing.T) {
	e := &env{stdin: strings.NewReader(""), stdout: &strings.Builder{}, stderr: &strings.Builder{}, getenv: func(string) string { return "" }}
	f, err := parseServeFlags(e, nil)
	if err != nil {
		t.Fatal(err)
	}
	want := wantFDs(f)
	for _, limit := range []int{0, 1 << 20, want.descriptors()} {
		if got, err := fitFDs(want, limit); err != nil || !got.equal(want) {
			t.Errorf("limit %d: %v %v, want the defaults", limit, got, err)
		}
	}
	for _, limit := range []int{256, 1024, 4096} {
		got, err := fitFDs(want, limit)
		if err != nil {
			t.Fatalf("limit %d: %v", limit, err)
		}
		if d := got.descriptors(); d > limit || d < limit*9/10 {
			t.Errorf("limit %d: %v holds %d descriptors", limit, got, d)
		}
		if got.dnsTCP < 8 || got.probes < 8 {
			t.Errorf("limit %d: %v", limit, got)
		}
		for _, h := range hostedServices() {
			if n := got.conns(h.flag); n < 8 || n > want.conns(h.flag) {
				t.Errorf("limit %d: %s gets %d connections", limit, h.flag, n)
			}
		}
	}
	if _, err := fitFDs(want, 64); err == nil || !strings.Contains(err.Error(), "ulimit -n") {
		t.Errorf("limit 64: %v", err)
	}
}
