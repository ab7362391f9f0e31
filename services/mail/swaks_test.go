package mail

import (
	"os/exec"
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
		!strings.Contains(m.Body, "line one\r\n.a line that starts with a dot\r\n") {
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
