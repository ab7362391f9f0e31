package main

import (
	"bytes"
	"flag"
	"os"
	"regexp"
	"strings"
	"testing"
)

// TestReadmeFlagTable holds the README's table of serve's flags to the
// command: each hosted service's line is the one its row renders, every
// flag of serve is in the table, and the table names no flag serve lacks.
func TestReadmeFlagTable(t *testing.T) {
	readme, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	// The table is the block of lines that starts with its header.
	_, rest, ok := bytes.Cut(readme, []byte("\n| flag | default | |\n"))
	if !ok {
		t.Fatal("no flag table (| flag | default | |) in README.md")
	}
	var table []string
	for _, line := range strings.Split(string(rest), "\n") {
		if !strings.HasPrefix(line, "|") {
			break
		}
		table = append(table, line)
	}

	for _, h := range hostedServices() {
		want := h.readmeRow()
		found := false
		for _, line := range table {
			found = found || line == want
		}
		if !found {
			t.Errorf("README's flag table lacks the row of --%s, which reads:\n%s", h.flag, want)
		}
	}

	var stdout, stderr bytes.Buffer
	e := &env{stdout: &stdout, stderr: &stderr, getenv: func(string) string { return "" }}
	if _, err := parseServeFlags(e, []string{"-h"}); err != flag.ErrHelp {
		t.Fatalf("serve -h: %v", err)
	}
	named := regexp.MustCompile("`--([a-z-]+)`")
	inTable := map[string]bool{}
	for _, line := range table {
		cells := strings.Split(line, "|")
		if len(cells) < 2 {
			continue
		}
		for _, m := range named.FindAllStringSubmatch(cells[1], -1) {
			inTable[m[1]] = true
		}
	}
	usage := stdout.String() + stderr.String() // help goes to stdout when asked for
	for name := range inTable {
		if !strings.Contains(usage, "\n  --"+name+" ") && !strings.Contains(usage, "\n  --"+name+"\n") {
			t.Errorf("README's flag table names --%s, which serve does not have", name)
		}
	}
	for _, m := range regexp.MustCompile(`(?m)^  --([a-z-]+)`).FindAllStringSubmatch(usage, -1) {
		if !inTable[m[1]] {
			t.Errorf("serve's --%s is not in README's flag table", m[1])
		}
	}
}
