package transfer_test

import (
	"bytes"
	"net"
	"net/netip"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/authority"
	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/registry"
)

// tsigLine matches the TSIG record dig prints after a signed transfer: it
// is not zone data, so it is removed before named-checkzone reads the file.
var tsigLine = regexp.MustCompile(`(?m)^\S+\s+\d+\s+ANY\s+TSIG\s.*$`)

// TestDigAXFR is the acceptance check, with the real dig and
// named-checkzone: with the key the zone comes whole and loads; without
// it, dig says "Transfer failed.".
func TestDigAXFR(t *testing.T) {
	dig := xfrTool(t, "dig")
	checkzone := xfrTool(t, "named-checkzone")
	reg := registry.New(7)
	// The NS target needs its address, or named-checkzone rejects the
	// zone; annuaire serve registers it.
	if _, err := reg.Update(func(tx *registry.Tx) error {
		return tx.PutHost(registry.Host{Name: "ns", Addrs: []netip.Addr{netip.MustParseAddr("127.0.0.1")}})
	}); err != nil {
		t.Fatal(err)
	}
	xfrRegister(t, reg, "echo", 7007, "host", "127.0.0.1")
	s := &authority.Server{Registry: reg, Keys: []tsig.Key{xfrKey}}
	addr := startXfr(t, s)
	host, port, _ := net.SplitHostPort(addr)
	key := "hmac-sha256:" + strings.TrimSuffix(xfrKey.Name, ".") + ":" + xfrKey.Secret

	out, err := exec.Command(dig, "-y", key, "AXFR", "svc.internal", "@"+host, "-p", port).CombinedOutput()
	if err != nil {
		t.Fatalf("dig AXFR: %v\n%s", err, out)
	}
	if !regexp.MustCompile(`(?m)^_echo\._tcp\.svc\.internal\.\s+10\s+IN\s+SRV\s+0 0 7007 host\.svc\.internal\.$`).Match(out) {
		t.Errorf("dig AXFR lacks the echo SRV:\n%s", out)
	}
	if bytes.Contains(out, []byte("Transfer failed")) || bytes.Contains(out, []byte("tsig verify failure")) {
		t.Errorf("dig AXFR with the key failed:\n%s", out)
	}
	zone := filepath.Join(t.TempDir(), "svc.internal.zone")
	if err := os.WriteFile(zone, tsigLine.ReplaceAll(out, nil), 0o600); err != nil {
		t.Fatal(err)
	}
	if check, err := exec.Command(checkzone, "svc.internal", zone).CombinedOutput(); err != nil {
		t.Errorf("named-checkzone: %v\n%s\nzone:\n%s", err, check, out)
	}

	out, _ = exec.Command(dig, "AXFR", "svc.internal", "@"+host, "-p", port).CombinedOutput()
	if !bytes.Contains(out, []byte("; Transfer failed.")) {
		t.Errorf("dig AXFR without a key did not fail:\n%s", out)
	}
}
