package registry

import (
	"encoding/json"
	"slices"
	"testing"
)

// TestNamesFoldASCII: only A-Z fold (RFC 4343 section 3). Labels that
// differ in a non-ASCII letter's case, or in a byte that is not UTF-8, are
// different instances, each found by its own name only.
func TestNamesFoldASCII(t *testing.T) {
	r := New(1)
	labels := []string{"café", "CAFÉ", "bin\xfe", "bin\xff", "Echo One"}
	for i, l := range labels {
		if _, err := r.Register(Instance{Service: "x", Host: "a", Port: uint16(i + 1), Label: l}, nil); err != nil {
			t.Fatalf("%q: %v", l, err)
		}
	}
	s := r.Snapshot()
	for i, l := range labels {
		inst, ok := s.ByLabel("tcp", "x", l)
		if !ok || inst.Port != uint16(i+1) || inst.Label != l {
			t.Errorf("ByLabel(%q) = %+v, %v", l, inst, ok)
		}
	}
	for q, want := range map[string]string{"CAFé": "café", "BIN\xfe": "bin\xfe", "ECHO one": "Echo One", "bin\xc0": "", "cafÉ": "CAFÉ", "Café": "café", "BIN\xdf": ""} {
		inst, ok := s.ByLabel("TCP", "X", q)
		if got := ""; ok {
			got = inst.Label
			if got != want {
				t.Errorf("ByLabel(%q) = %q, want %q", q, got, want)
			}
		} else if want != "" {
			t.Errorf("ByLabel(%q) found nothing, want %q", q, want)
		}
	}
	for _, c := range []struct {
		a, b string
		same bool
	}{{"A", "a", true}, {"É", "é", false}, {"\xfe", "\xff", false}, {"K", "\u212a", false}, {"Z@[", "z@[", true}} {
		if SameName(c.a, c.b) != c.same {
			t.Errorf("SameName(%q, %q) = %v", c.a, c.b, !c.same)
		}
	}
}

// TestBytesSurviveRestart: TXT strings and labels of any bytes come back
// from the journal and from a checkpoint exactly, in order.
func TestBytesSurviveRestart(t *testing.T) {
	txt := TXT{"txtvers=1", "utf=café", `q=say "hi"`, `path=C:\dir`, "bin=\x00\xff\xfe", "duplex", "empty="}
	label := "Imprimante Salle 2.3 (étage) \xfe"
	subtypes := []string{"_printer", "_\xfe"}
	dir := t.TempDir()
	for _, segment := range []int64{0, 1} { // a journal record, then a checkpoint
		r, err := Open(dir, Options{plainSync: true, SegmentSize: segment})
		if err != nil {
			t.Fatal(err)
		}
		if segment == 0 {
			if _, err := r.Register(Instance{Service: "ipp", Host: "printer", Port: 631, Label: label, TXT: txt, Subtypes: subtypes}, nil); err != nil {
				t.Fatal(err)
			}
		} else if _, err := r.Register(Instance{Service: "other", Host: "b", Port: 1}, nil); err != nil {
			t.Fatal(err) // a write past a one-byte segment: a checkpoint
		}
		r.Close()
		r, err = Open(dir, Options{plainSync: true})
		if err != nil {
			t.Fatal(err)
		}
		inst, ok := r.Snapshot().ByLabel("tcp", "ipp", label)
		if !ok || inst.Label != label || !slices.Equal(inst.TXT, txt) || !slices.Equal(inst.Subtypes, subtypes) {
			t.Errorf("after a restart (segment size %d): %+v, %v", segment, inst, ok)
		}
		r.Close()
	}
}

// TestTXTJSON: the list form, with base64 for what is not UTF-8, and the
// object form of older journals and API clients, read in the order written.
func TestTXTJSON(t *testing.T) {
	txt := TXT{"txtvers=1", "duplex", "bin=\xff", "utf=café"}
	b, err := json.Marshal(txt)
	if err != nil {
		t.Fatal(err)
	}
	if want := `["txtvers=1","duplex",{"base64":"YmluPf8="},"utf=café"]`; string(b) != want {
		t.Errorf("marshal: %s, want %s", b, want)
	}
	for in, want := range map[string]TXT{
		string(b):                        txt,
		`{"txtvers":"1","b":"2","a":""}`: {"txtvers=1", "b=2", "a="},
		`[]`:                             {},
		`null`:                           nil,
		`["paper=A4",{"base64":"AP8="}]`: {"paper=A4", "\x00\xff"},
	} {
		var got TXT
		if err := json.Unmarshal([]byte(in), &got); err != nil || !slices.Equal(got, want) || (got == nil) != (want == nil) {
			t.Errorf("unmarshal %s: %q, %v; want %q", in, got, err, want)
		}
	}
	for _, in := range []string{`"a=b"`, `[1]`, `{"a":1}`, `[{"hex":"00"}]`, `[{"base64":"!"}]`} {
		var got TXT
		if err := json.Unmarshal([]byte(in), &got); err == nil {
			t.Errorf("unmarshal %s: %q, want an error", in, got)
		}
	}
}

// TestTXTEdit: Set replaces a key where it is or appends; Without removes
// a string exactly, its key in any case.
func TestTXTEdit(t *testing.T) {
	txt := TXT{"txtvers=1", "duplex", "paper=A4"}
	if got, want := txt.Set("PAPER=A3"), (TXT{"txtvers=1", "duplex", "PAPER=A3"}); !slices.Equal(got, want) {
		t.Errorf("Set: %q, want %q", got, want)
	}
	if got, want := txt.Set("duplex=yes").Set("color"), (TXT{"txtvers=1", "duplex=yes", "paper=A4", "color"}); !slices.Equal(got, want) {
		t.Errorf("Set: %q, want %q", got, want)
	}
	if got := txt.Without("duplex="); !slices.Equal(got, txt) {
		t.Errorf(`Without("duplex="): %q: "duplex" is not "duplex="`, got)
	}
	if got, want := txt.Without("DUPLEX").Without("paper=A4"), (TXT{"txtvers=1"}); !slices.Equal(got, want) {
		t.Errorf("Without: %q, want %q", got, want)
	}
	if v, ok := txt.Lookup("Paper"); !ok || v != "A4" {
		t.Errorf("Lookup: %q, %v", v, ok)
	}
	if !slices.Equal(txt, TXT{"txtvers=1", "duplex", "paper=A4"}) {
		t.Errorf("edits changed the record: %q", txt)
	}
}
