package main

import (
	"bytes"
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/annuaire/annuaire/internal/testenv"
)

// post registers one instance through the API of a running annuaire.
func post(t *testing.T, a *annuaire, body string) {
	t.Helper()
	token, err := os.ReadFile(filepath.Join(a.data, "token"))
	if err != nil {
		t.Fatal(err)
	}
	req, _ := http.NewRequest("POST", "http://"+a.web+"/api/services", strings.NewReader(body))
	req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusCreated {
		t.Fatalf("POST %s: %s", body, resp.Status)
	}
}

// listed is the instance IDs the API of a running annuaire lists.
func listed(t *testing.T, a *annuaire) map[string]bool {
	t.Helper()
	resp, err := http.Get("http://" + a.web + "/api/services")
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var list []struct{ ID string }
	if err := json.NewDecoder(resp.Body).Decode(&list); err != nil {
		t.Fatal(err)
	}
	ids := map[string]bool{}
	for _, s := range list {
		ids[s.ID] = true
	}
	return ids
}

// TestDamagedJournal damages the journal of a stopped annuaire the way
// issue 18 did (three bytes flipped mid-segment): serve refuses to start
// and says how to accept the loss; repair, or serve --recover, starts
// with every intact record, which dig finds, and a SOA serial past the
// one served before.
func TestDamagedJournal(t *testing.T) {
	testenv.NeedTool(t, "dig")
	a := startServe(t)
	const n = 60
	for i := range n {
		post(t, a, fmt.Sprintf(`{"name":"svc%d","port":%d,"addresses":["127.0.1.%d"]}`, i, 10000+i, i+1))
	}
	before := strings.Fields(dig(t, a.dns, "+short", "svc.internal.", "SOA"))[2]
	if out, err := command(t, "stop", "--data", a.data).CombinedOutput(); err != nil {
		t.Fatalf("stop: %v\n%s", err, out)
	}
	a.waitExit(t, 10*time.Second)

	seg := filepath.Join(a.data, "journal.0000000000000001")
	b, err := os.ReadFile(seg)
	if err != nil {
		t.Fatal(err)
	}
	mid := len(bytes.TrimRight(b, "\x00")) / 2
	for i := range 3 {
		b[mid+i] ^= 0xff
	}
	if err := os.WriteFile(seg, b, 0o600); err != nil {
		t.Fatal(err)
	}

	for _, how := range []string{"serve --recover", "repair"} {
		t.Run(how, func(t *testing.T) {
			data := t.TempDir()
			for _, name := range []string{"journal.0000000000000001", "checkpoint", "token"} {
				c, _ := os.ReadFile(filepath.Join(a.data, name))
				os.WriteFile(filepath.Join(data, name), c, 0o600)
			}
			cmd := command(t, "serve", "--dns", "127.0.0.1:0", "--web", "127.0.0.1:0", "--echo", "", "--mail", "", "--telnet", "", "--data", data)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			err := cmd.Run()
			if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 1 {
				t.Fatalf("serve on a damaged journal: %v, want exit 1\n%s", err, stderr.String())
			}
			for _, want := range []string{"journal damaged, refusing to start", seg[len(a.data):], "intact records follow", "annuaire repair --data " + data, "annuaire serve --recover"} {
				if !strings.Contains(stderr.String(), want) {
					t.Errorf("serve's refusal does not say %q:\n%s", want, stderr.String())
				}
			}

			var b *annuaire
			if how == "repair" {
				out, err := command(t, "repair", "--data", data).CombinedOutput()
				if err != nil || !strings.Contains(string(out), "journal damaged: dropped what it held") || !strings.Contains(string(out), "repaired: ") {
					t.Fatalf("repair: %v\n%s", err, out)
				}
				b = startServeOn(t, data, "--allow-transfer", "127.0.0.1/32")
			} else {
				b = startServeOn(t, data, "--recover", "--allow-transfer", "127.0.0.1/32")
			}
			ids := listed(t, b)
			kept := 0
			for i := range n {
				if ids[fmt.Sprintf("svc%d-tcp-h-127-0-1-%d-%d", i, i+1, 10000+i)] {
					kept++
				}
			}
			if kept < n-1 {
				t.Errorf("%d of %d registrations recovered, want all but at most the damaged one", kept, n)
			}
			if out := dig(t, b.dns, "+short", fmt.Sprintf("_svc%d._tcp.svc.internal.", n-1), "SRV"); !strings.Contains(out, fmt.Sprint(10000+n-1)) {
				t.Errorf("the last registration, after the damage, is not in DNS: %q", out)
			}
			after := strings.Fields(dig(t, b.dns, "+short", "svc.internal.", "SOA"))[2]
			if !serialAfter(after, before) {
				t.Errorf("SOA serial %s after recovery, want past %s", after, before)
			}
			// A secondary at the serial served before asks for the diff and
			// gets the whole zone (RFC 1995 section 4): no old SOA in it.
			ixfr := dig(t, b.dns, "svc.internal.", "IXFR="+before)
			if strings.Contains(ixfr, " "+before+" ") || !strings.Contains(ixfr, fmt.Sprintf("_svc%d._tcp.svc.internal.", n-1)) {
				t.Errorf("IXFR from %s after recovery is not the whole zone:\n%s", before, ixfr)
			}
		})
	}
}

func serialAfter(a, b string) bool {
	var x, y uint32
	fmt.Sscan(a, &x)
	fmt.Sscan(b, &y)
	return x != y && int32(x-y) > 0
}
