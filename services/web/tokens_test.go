package web

import (
	"encoding/json"
	"errors"
	"net/http"
	"os"
	"path/filepath"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/services/mail"
)

func TestTokensStore(t *testing.T) {
	data := t.TempDir()
	store := TokensIn(data)
	if list, err := store.List(); err != nil || len(list) != 0 {
		t.Fatalf("empty store: %v, %v", list, err)
	}
	bob, err := store.Add("bob", 0)
	if err != nil {
		t.Fatal(err)
	}
	alice, err := store.Add("alice", 3)
	if err != nil {
		t.Fatal(err)
	}
	if !strings.HasPrefix(alice, "alice.") || len(alice) != len("alice.")+43 {
		t.Errorf("token %q: want alice. and 43 base64url characters (256 bits)", alice)
	}
	// The secret is kept only as its hash.
	b, err := os.ReadFile(filepath.Join(data, "tokens", "alice.json"))
	if err != nil {
		t.Fatal(err)
	}
	_, secret, _ := strings.Cut(alice, ".")
	if strings.Contains(string(b), secret) {
		t.Errorf("the secret is in the file:\n%s", b)
	}
	if fi, _ := os.Stat(filepath.Join(data, "tokens", "alice.json")); runtime.GOOS != "windows" && fi.Mode().Perm() != 0o600 {
		t.Errorf("mode %v, want 0600", fi.Mode().Perm())
	}

	if _, err := store.Add("alice", 0); !errors.Is(err, ErrTokenExists) {
		t.Errorf("second alice: %v", err)
	}
	for _, bad := range []string{"", "Alice", "admin", "1st", "a_b", "a-", "a--b", "abcdefghijklm", "../x"} {
		if _, err := store.Add(bad, 0); err == nil {
			t.Errorf("Add(%q) accepted", bad)
		}
	}
	if _, err := store.Add("carol", -1); err == nil {
		t.Error("negative max instances accepted")
	}

	list, err := store.List()
	if err != nil || len(list) != 2 || list[0].Name != "alice" || list[0].MaxInstances != 3 || list[1].Name != "bob" {
		t.Errorf("List: %+v, %v", list, err)
	}
	for _, tc := range []struct {
		token string
		want  string
	}{
		{alice, "alice"},
		{bob, "bob"},
		{"alice." + strings.Split(bob, ".")[1], ""}, // bob's secret under alice's name
		{alice + "x", ""},
		{"alice.", ""},
		{"alice", ""},
		{"carol.abc", ""},
		{"", ""},
	} {
		info, ok := store.Check(tc.token)
		if ok != (tc.want != "") || info.Name != tc.want {
			t.Errorf("Check(%q) = %q, %v; want %q", tc.token, info.Name, ok, tc.want)
		}
	}

	if err := store.Revoke("alice"); err != nil {
		t.Fatal(err)
	}
	if _, ok := store.Check(alice); ok {
		t.Error("revoked token still checks")
	}
	if err := store.Revoke("alice"); !errors.Is(err, ErrNoToken) {
		t.Errorf("second revoke: %v", err)
	}
	// A name revoked may be given again, with a new secret.
	again, err := store.Add("alice", 0)
	if err != nil || again == alice {
		t.Errorf("alice again: %q, %v", again, err)
	}
}

// studentServer is a server with the administrator's token and two
// student tokens, alice's and bob's.
func studentServer(t *testing.T, s *Server) (base, alice, bob string) {
	t.Helper()
	s.Token = testToken
	s.Tokens = TokensIn(t.TempDir())
	var err error
	if alice, err = s.Tokens.Add("alice", 0); err != nil {
		t.Fatal(err)
	}
	if bob, err = s.Tokens.Add("bob", 0); err != nil {
		t.Fatal(err)
	}
	if s.Registry == nil {
		s.Registry = registry.New(1)
	}
	return startServer(t, s), alice, bob
}

func TestStudentTokens(t *testing.T) {
	s := &Server{Health: func(string) error { return nil }}
	base, alice, bob := studentServer(t, s)
	r := call(t, "POST", base+"/api/services", alice, `{"name":"echo-alice","port":4000,"addresses":["127.0.0.2"],"check":{"type":"ttl"}}`)
	var v Service
	if json.Unmarshal(r.body, &v); r.status != http.StatusCreated || v.Owner != "alice" {
		t.Fatalf("alice registers: %d %s", r.status, r.body)
	}
	id := "echo-alice-tcp-h-127-0-0-2-4000"
	serial := s.Registry.Snapshot().Serial()

	for _, tc := range []struct {
		what, method, path, body, want string
	}{
		{"deregister", "DELETE", "/api/services/" + id, "", `instance "` + id + `" belongs to alice, not to bob`},
		{"overwrite", "POST", "/api/services", `{"name":"echo-alice","port":4000,"addresses":["127.0.0.2"]}`, `instance "` + id + `" belongs to alice, not to bob`},
		{"join her service", "POST", "/api/services", `{"name":"echo-alice","port":4001,"addresses":["127.0.0.3"]}`, `service "_echo-alice._tcp" belongs to alice, not to bob`},
		{"move her host", "POST", "/api/services", `{"name":"echo-bob","port":4001,"host":"h-127-0-0-2","addresses":["127.0.0.3"]}`, `host "h-127-0-0-2" belongs to alice, not to bob`},
		{"heartbeat", "PUT", "/api/services/" + id + "/heartbeat", "", `instance "` + id + `" belongs to alice, not to bob`},
	} {
		r := call(t, tc.method, base+tc.path, bob, tc.body)
		if r.status != http.StatusForbidden || r.errorText() != tc.want {
			t.Errorf("bob: %s: %d %s; want 403 %q", tc.what, r.status, r.body, tc.want)
		}
	}
	if got := s.Registry.Snapshot().Serial(); got != serial {
		t.Errorf("serial %d after bob's refused writes, want %d", got, serial)
	}
	if r := call(t, "PUT", base+"/api/services/"+id+"/heartbeat", alice, ""); r.status != http.StatusOK {
		t.Errorf("alice's heartbeat: %d %s", r.status, r.body)
	}

	// Tokens that are not: a student token's name with a wrong secret, a
	// revoked one.
	r = call(t, "DELETE", base+"/api/services/"+id, "alice.wrong", "")
	if r.status != http.StatusUnauthorized || r.errorText() != "wrong token: not the secret of alice's token" {
		t.Errorf("wrong secret: %d %s", r.status, r.body)
	}
	if err := s.Tokens.Revoke("bob"); err != nil {
		t.Fatal(err)
	}
	r = call(t, "POST", base+"/api/services", bob, `{"name":"echo-bob","port":4001,"addresses":["127.0.0.3"]}`)
	if r.status != http.StatusUnauthorized || !strings.Contains(r.errorText(), "no token bob (revoked") {
		t.Errorf("revoked: %d %s", r.status, r.body)
	}

	// The mail received, on a listener reachable from the network, is the
	// teacher's to read.
	s.Messages = func() []mail.Message { return nil }
	s.exposed.Store(true)
	if r := call(t, "GET", base+"/api/messages", alice, ""); r.status != http.StatusForbidden || r.errorText() != "this needs the administrator's token, not alice's" {
		t.Errorf("alice reads the mail: %d %s", r.status, r.body)
	}
	if r := call(t, "GET", base+"/api/messages", testToken, ""); r.status != http.StatusOK {
		t.Errorf("the teacher reads the mail: %d %s", r.status, r.body)
	}
	s.exposed.Store(false)

	// The teacher may.
	if r := call(t, "DELETE", base+"/api/services/"+id, testToken, ""); r.status != http.StatusNoContent {
		t.Errorf("the administrator deregisters alice's: %d %s", r.status, r.body)
	}
}

func TestStudentQuotaAndPrefix(t *testing.T) {
	s := &Server{TokenMaxInstances: 2, TokenPrefix: true}
	base, alice, _ := studentServer(t, s)
	reg := func(token, name, port string) reply {
		return call(t, "POST", base+"/api/services", token, `{"name":"`+name+`","port":`+port+`,"addresses":["127.0.0.2"]}`)
	}
	if r := reg(alice, "echo", "4000"); r.status != http.StatusForbidden || r.errorText() != `name "echo": on this server the names of alice's services start with alice- (alice-echo, for one)` {
		t.Errorf("unprefixed: %d %s", r.status, r.body)
	}
	for _, name := range []string{"alice", "Alice-echo"} {
		if r := reg(alice, name, "4000"); r.status != http.StatusCreated {
			t.Errorf("%s: %d %s", name, r.status, r.body)
		}
	}
	if r := reg(alice, "alice-echo", "4001"); r.status != http.StatusForbidden || r.errorText() != "alice already holds 2 instances, the most its token may" {
		t.Errorf("third: %d %s", r.status, r.body)
	}
	if r := reg(testToken, "echo", "4002"); r.status != http.StatusCreated {
		t.Errorf("the administrator, unprefixed and unlimited: %d %s", r.status, r.body)
	}

	// A token's own number beats the server's default.
	big, err := s.Tokens.Add("carol", 3)
	if err != nil {
		t.Fatal(err)
	}
	for i, port := range []string{"5000", "5001", "5002", "5003"} {
		r := reg(big, "carol-echo", port)
		if want := http.StatusCreated; i == 3 {
			if r.status != http.StatusForbidden {
				t.Errorf("carol's fourth: %d %s", r.status, r.body)
			}
		} else if r.status != want {
			t.Errorf("carol's %d: %d %s", i+1, r.status, r.body)
		}
	}
}

func TestStudentRate(t *testing.T) {
	s := &Server{TokenRate: 1}
	base, alice, bob := studentServer(t, s)
	del := func(token string) reply { return call(t, "DELETE", base+"/api/services/none", token, "") }
	for i := range 2 { // a burst of twice the rate
		if r := del(alice); r.status != http.StatusNotFound {
			t.Fatalf("write %d: %d %s", i+1, r.status, r.body)
		}
	}
	r := del(alice)
	if r.status != http.StatusTooManyRequests || r.header.Get("Retry-After") != "1" || r.errorText() != "token alice writes faster than 1 per second; retry later" {
		t.Errorf("third write at once: %d %q %s", r.status, r.header.Get("Retry-After"), r.body)
	}
	if r := del(bob); r.status != http.StatusNotFound {
		t.Errorf("bob, limited by alice's writes: %d", r.status)
	}
	for range 10 {
		if r := del(testToken); r.status != http.StatusNotFound {
			t.Fatalf("the administrator, limited: %d", r.status)
		}
	}
}

func TestWriteLimiter(t *testing.T) {
	t0 := time.Unix(1e9, 0)
	for _, tc := range []struct {
		rate  float64
		burst int
		wait  time.Duration
	}{
		{10, 20, 100 * time.Millisecond},
		{1, 2, time.Second},
		{0.5, 1, 2 * time.Second}, // a burst of at least one
		{0.2, 1, 5 * time.Second},
	} {
		var l writeLimiter
		for i := range tc.burst {
			if _, ok := l.allow("a", t0, tc.rate); !ok {
				t.Fatalf("rate %g: write %d of the burst refused", tc.rate, i+1)
			}
		}
		wait, ok := l.allow("a", t0, tc.rate)
		if ok || wait != tc.wait {
			t.Errorf("rate %g: after the burst: %v, %v; want to wait %v", tc.rate, wait, ok, tc.wait)
		}
		if _, ok := l.allow("a", t0.Add(tc.wait), tc.rate); !ok {
			t.Errorf("rate %g: refused after the wait", tc.rate)
		}
	}
}
