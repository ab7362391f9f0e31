package web

import (
	"encoding/json"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/registry"
)

// FuzzRegister sends arbitrary bodies to POST /api/services: the answer is
// always 201, 400 or 413 with a JSON body, and a rejected body writes
// nothing. Seeds are in testdata/fuzz/FuzzRegister.
func FuzzRegister(f *testing.F) {
	f.Add([]byte(`{"name":"echo","port":7007,"addresses":["127.0.0.1"]}`))
	f.Fuzz(func(t *testing.T, body []byte) {
		s := &Server{Token: testToken, Registry: registry.New(1), MaxBody: 4096}
		req := httptest.NewRequest("POST", "/api/services", strings.NewReader(string(body)))
		req.Header.Set("Authorization", "Bearer "+testToken)
		rec := httptest.NewRecorder()
		s.Handler().ServeHTTP(rec, req)

		if !json.Valid(rec.Body.Bytes()) {
			t.Fatalf("%d: answer is not JSON: %q", rec.Code, rec.Body.Bytes())
		}
		serial := s.Registry.Snapshot().Serial()
		switch rec.Code {
		case http.StatusCreated:
			var v struct{ ID string }
			if err := json.Unmarshal(rec.Body.Bytes(), &v); err != nil || v.ID == "" {
				t.Fatalf("201 without an id: %s", rec.Body.Bytes())
			}
			if _, ok := s.Registry.Snapshot().Instance(v.ID); !ok {
				t.Fatalf("201 for %q, which is not in the registry", v.ID)
			}
			if serial != 2 {
				t.Fatalf("serial %d after one registration, want 2", serial)
			}
		case http.StatusBadRequest, http.StatusRequestEntityTooLarge:
			var e map[string]string
			if err := json.Unmarshal(rec.Body.Bytes(), &e); err != nil || e["error"] == "" || len(e) != 1 {
				t.Fatalf("%d without {\"error\"}: %s", rec.Code, rec.Body.Bytes())
			}
			if serial != 1 {
				t.Fatalf("rejected body moved the serial to %d", serial)
			}
		default:
			t.Fatalf("status %d: %s", rec.Code, rec.Body.Bytes())
		}
	})
}
