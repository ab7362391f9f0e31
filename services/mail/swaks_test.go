package mail

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/internal/testenv"
)

// TestSwaks delivers with swaks, a real SMTP client, as the lab does.
func TestSwaks(t *testing.T) {
	swaks := testenv.NeedTool(t, "swaks")
	s := &Receiver{}
	addr := start(t, s)
	out, err := exec.Command(swaks, "--server", addr, "--from", "student@lab", "--to", "a@svc.internal",
		"--header", "Subject: hello from swaks", "--body", "line one\n.a line that starts with a dot\n").CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "<-  250 Ok: queued as 1") {
		t.Errorf("swaks transcript lacks the queue reply:\n%s", out)
	}
	ms := s.Messages()
	if len(ms) != 1 {
		t.Fatalf("%d messages, want 1\n%s", len(ms), out)
	}
	m := ms[0]
	if m.From != "student@lab" || len(m.To) != 1 || m.To[0] != "a@svc.internal" || m.Subject != "hello from swaks" ||
		!strings.Contains(string(m.Body), "line one\r\n.a line that starts with a dot\r\n") {
		t.Errorf("got %+v\n%s", m, out)
	}
}

// TestSwaksTooBig: swaks announces SIZE, which the server refuses at MAIL.
func TestSwaksTooBig(t *testing.T) {
	swaks := testenv.NeedTool(t, "swaks")
	s := &Receiver{MaxSize: 100}
	addr := start(t, s)
	out, err := exec.Command(swaks, "--server", addr, "--to", "a@svc.internal",
		"--body", strings.Repeat("too big ", 50)).CombinedOutput()
	if err == nil {
		t.Fatalf("swaks succeeded:\n%s", out)
	}
	if !strings.Contains(string(out), "<** 552 ") {
		t.Errorf("no 552 in transcript:\n%s", out)
	}
	if n := len(s.Messages()); n != 0 {
		t.Errorf("%d messages kept", n)
	}
}

// TestSwaks8Bit: a body in Latin-1, as 8BITMIME allows (RFC 6152), is
// kept as the bytes sent, and JSON carries it as {"base64": ...}. Each
// byte that is not UTF-8 used to become U+FFFD: "caf\xe9" came back
// "caf\uFFFD", the message changed on the way through.
func TestSwaks8Bit(t *testing.T) {
	swaks := testenv.NeedTool(t, "swaks")
	s := &Receiver{}
	addr := start(t, s)
	body := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(body, []byte("Subject: caf\xe9\n\ncaf\xe9 cr\xe8me\n"), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(swaks, "--server", addr, "--to", "a@svc.internal", "--data", "@"+body).CombinedOutput()
	if err != nil {
		t.Fatalf("swaks: %v\n%s", err, out)
	}
	ms := s.Messages()
	if len(ms) != 1 || ms[0].Body != "caf\xe9 cr\xe8me\r\n\r\n" {
		t.Fatalf("messages %+v\n%s", ms, out)
	}
	b, err := json.Marshal(ms[0])
	if err != nil || !strings.Contains(string(b), `"body":{"base64":"Y2Fm6SBjcuhtZQ0KDQo="}`) {
		t.Errorf("JSON %s, %v", b, err)
	}
}
