package web

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/registry"
)

// BenchmarkRegisterHandler is one registration and one deregistration
// through the mux, as bench/churn makes them, on a registry of 100
// instances in memory: the CPU an API write costs this package and the
// registry, without the connection and the journal's fsync.
func BenchmarkRegisterHandler(b *testing.B) {
	reg := registry.New(1)
	for i := range 100 {
		if _, err := reg.Register(registry.Instance{Service: fmt.Sprintf("s%d", i%20), Host: fmt.Sprintf("h%d", i%20), Port: uint16(1000 + i),
			Label: fmt.Sprintf("i%d", i)}, &registry.Host{Name: fmt.Sprintf("h%d", i%20), Auto: true}); err != nil {
			b.Fatal(err)
		}
	}
	h := (&Server{Registry: reg, Token: "t"}).Handler()
	w := &discardWriter{h: http.Header{}}
	body := `{"name":"churn7","port":%d,"host":"churnh1","addresses":["10.250.0.1"],"ttl":60}`
	b.ReportAllocs()
	i := 0
	for b.Loop() {
		i++
		req := httptest.NewRequest(http.MethodPost, "/api/services", strings.NewReader(fmt.Sprintf(body, 10000+i%50000)))
		req.Header.Set("Authorization", "Bearer t")
		req.RemoteAddr = "127.0.0.1:5000"
		clear(w.h)
		h.ServeHTTP(w, req)
		id := fmt.Sprintf("churn7-tcp-churnh1-%d", 10000+i%50000)
		req = httptest.NewRequest(http.MethodDelete, "/api/services/"+id, nil)
		req.Header.Set("Authorization", "Bearer t")
		req.RemoteAddr = "127.0.0.1:5000"
		clear(w.h)
		h.ServeHTTP(w, req)
	}
	if n := countAll(reg.Snapshot()); n != 100 {
		b.Fatalf("%d instances after the run, want the 100 of the start", n)
	}
}

func countAll(s *registry.Snapshot) int {
	n := 0
	for range s.All() {
		n++
	}
	return n
}
