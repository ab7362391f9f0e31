package lograte

import (
	"bytes"
	"fmt"
	"log/slog"
	"strings"
	"testing"
	"time"
)

func newTest(burst int) (*slog.Logger, *bytes.Buffer, *time.Time) {
	var buf bytes.Buffer
	h := New(slog.NewTextHandler(&buf, nil), burst, 10*time.Second).(*handler)
	now := time.Unix(1000, 0)
	h.s.now = func() time.Time { return now }
	return slog.New(h), &buf, &now
}

func lines(buf *bytes.Buffer) []string {
	s := strings.TrimSpace(buf.String())
	if s == "" {
		return nil
	}
	return strings.Split(s, "\n")
}

// TestPerSource: a flood from one source passes its burst, then one line
// per interval that counts the rest; another source, and another message,
// are not held back by it.
func TestPerSource(t *testing.T) {
	log, buf, now := newTest(3)
	flood := log.With(SourceKey, "192.0.2.1:53")
	for range 1000 {
		flood.Warn("dns update refused", "reason", "unsigned")
	}
	flood.Warn("dns update refused", SourceKey, "192.0.2.1:54")    // another port: the same source
	log.Warn("dns update refused", SourceKey, "198.51.100.7:1234") // the source as a record attribute
	flood.Info("zone transfer")
	*now = now.Add(10 * time.Second)
	flood.Warn("dns update refused")
	got := lines(buf)
	if len(got) != 6 {
		t.Fatalf("%d lines, want 3 of the burst, the other source, the other message, one after the interval:\n%s", len(got), buf)
	}
	if !strings.Contains(got[3], "198.51.100.7") || strings.Contains(got[3], "repeated") {
		t.Errorf("other source: %s", got[3])
	}
	if !strings.Contains(got[4], "zone transfer") {
		t.Errorf("other message: %s", got[4])
	}
	if !strings.Contains(got[5], "repeated=998") || !strings.Contains(got[5], "client=192.0.2.1:53") {
		t.Errorf("after the interval: %s", got[5])
	}
}

// TestSpoofedSources: a flood from a new source per packet (spoofed) is
// held by the message's bucket, ten times a source's, and counted.
func TestSpoofedSources(t *testing.T) {
	log, buf, now := newTest(3)
	for i := range 10000 {
		log.Warn("dns update refused", SourceKey, fmt.Sprintf("10.%d.%d.%d:53", i>>16, (i>>8)&255, i&255))
	}
	if n := len(lines(buf)); n != 30 {
		t.Errorf("%d lines for 10,000 sources, want the message's 30", n)
	}
	*now = now.Add(time.Second)
	buf.Reset()
	log.Warn("dns update refused", SourceKey, "192.0.2.99:53")
	if got := lines(buf); len(got) != 1 || !strings.Contains(got[0], "others=9970") {
		t.Errorf("next line: %q, want one counting the 9,970 dropped", got)
	}
}
