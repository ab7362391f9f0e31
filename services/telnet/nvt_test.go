package telnet

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"strings"
	"testing"
)

// readAll runs the decoder over in and returns each line (or error) and
// what it wrote back.
func readAll(in string, max int) (lines []string, reply string) {
	var out bytes.Buffer
	w := bufio.NewWriter(&out)
	n := nvt{r: bufio.NewReader(strings.NewReader(in)), w: w, flush: w.Flush}
	for {
		line, err := n.readLine(max)
		switch {
		case err == nil:
			lines = append(lines, line)
		case errors.Is(err, errLineTooLong), errors.Is(err, errInterrupt):
			lines = append(lines, "<"+err.Error()+">")
		default:
			w.Flush()
			return lines, out.String()
		}
	}
}

func TestReadLine(t *testing.T) {
	tests := []struct {
		name, in string
		lines    []string
		reply    string
	}{
		{"CRLF", "help\r\nlist\r\n", []string{"help", "list"}, ""},
		{"CRNUL", "help\r\x00list\r\x00", []string{"help", "list"}, ""},
		{"BareLF", "help\nlist\n", []string{"help", "list"}, ""},
		{"BareCR", "help\rlist\r", []string{"help", "list"}, ""},
		{"Empty", "\r\n\r\n", []string{"", ""}, ""},
		{"DoEcho", "\xff\xfd\x01help\r\n", []string{"help"}, "\xff\xfc\x01"},
		{"WillNAWS", "\xff\xfb\x1fhelp\r\n", []string{"help"}, "\xff\xfe\x1f"},
		{"WontDontUnanswered", "\xff\xfc\x01\xff\xfe\x03help\r\n", []string{"help"}, ""},
		{"SBNAWS", "\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0help\r\n", []string{"help"}, ""},
		{"SBWithIACIAC", "\xff\xfa\x1f\x00\xff\xff\x00\x18\xff\xf0help\r\n", []string{"help"}, ""},
		{"SBWithoutSE", "\xff\xfa\x18\x00xterm\xff\xfd\x01help\r\n", []string{"help"}, "\xff\xfc\x01"},
		{"IACIAC", "a\xff\xffb\r\n", []string{"a\xffb"}, ""},
		{"SplitCommand", "he\xff\xf1lp\r\n", []string{"help"}, ""},
		{"EraseChar", "helpp\xff\xf7\r\n", []string{"help"}, ""},
		{"EraseLine", "garbage\xff\xf8help\r\n", []string{"help"}, ""},
		{"Backspace", "helx\x7fp\r\n", []string{"help"}, ""},
		{"Controls", "he\x01\x1blp\r\n", []string{"help"}, ""},
		{"Interrupt", "oops\xff\xf4\xff\xfd\x06help\r\n", []string{"<interrupted>", "help"}, "\xff\xfc\x06"},
		{"AYT", "\xff\xf6", nil, "\r\n[annuaire: yes]\r\n"},
		{"TooLong", strings.Repeat("x", 20) + "\r\nhelp\r\n", []string{"<line too long>", "help"}, ""},
		{"AtLimit", strings.Repeat("x", 10) + "\r\n", []string{strings.Repeat("x", 10)}, ""},
		{"ClientAtPort23", "\xff\xfd\x03\xff\xfb\x18\xff\xfb\x1f\xff\xfb\x20\xff\xfb\x21\xff\xfb\x22\xff\xfb\x27\xff\xfd\x05",
			nil, "\xff\xfc\x03\xff\xfe\x18\xff\xfe\x1f\xff\xfe\x20\xff\xfe\x21\xff\xfe\x22\xff\xfe\x27\xff\xfc\x05"},
	}
	for _, tt := range tests {
		t.Run(tt.name, func(t *testing.T) {
			lines, reply := readAll(tt.in, 10)
			if fmt.Sprintf("%q", lines) != fmt.Sprintf("%q", tt.lines) {
				t.Errorf("lines %q, want %q", lines, tt.lines)
			}
			if reply != tt.reply {
				t.Errorf("reply %q, want %q", reply, tt.reply)
			}
		})
	}
}

func TestNVTText(t *testing.T) {
	for in, want := range map[string]string{
		"a\nb":       "a\r\nb",
		"a\r\nb\n":   "a\r\nb\r\n",
		"a\rb":       "a\r\x00b",
		"\xff":       "\xff\xff",
		"café\n":     "café\r\n",
		"":           "",
		"\n\n\r\n\r": "\r\n\r\n\r\n\r\x00",
	} {
		if got := nvtText(in); got != want {
			t.Errorf("nvtText(%q) = %q, want %q", in, got, want)
		}
	}
}

// FuzzNVT feeds arbitrary bytes to the decoder: lines never carry line
// ends, and what it writes back is only whole refusals or the AYT answer.
func FuzzNVT(f *testing.F) {
	f.Add([]byte("\xff\xfd\x01help\r\n"))
	f.Add([]byte("\xff\xfa\x1f\x00\x50\x00\x18\xff\xf0a\xff\xffb\r\x00"))
	f.Add([]byte("\xff\xfb\x18\xff\xf6\xff\xf4x\r"))
	f.Fuzz(func(t *testing.T, in []byte) {
		lines, reply := readAll(string(in), 64)
		for _, l := range lines {
			if strings.ContainsAny(l, "\r\n") || len(l) > 64 && l[0] != '<' {
				t.Fatalf("line %q", l)
			}
		}
		reply = strings.ReplaceAll(reply, "\r\n[annuaire: yes]\r\n", "")
		for len(reply) > 0 {
			if len(reply) < 3 || reply[0] != cmdIAC || (reply[1] != cmdDONT && reply[1] != cmdWONT) {
				t.Fatalf("reply %q", reply)
			}
			reply = reply[3:]
		}
	})
}
