package registry

import (
	"bytes"
	"encoding/json"
	"errors"
	"fmt"
	"strconv"
	"strings"
)

// TXT is a DNS-SD instance's TXT record (RFC 6763 section 6): its
// character-strings in the order they were given, which is the order they
// are served in (section 6.7: txtvers first, where given), each the raw
// bytes served (RFC 1035 section 3.3.14: any octets, not text). A string
// is "key=value", where the value is any bytes, or "key" alone: a boolean
// attribute, present without a value, which is not "key=", present with
// an empty value (section 6.4). Keys compare case-insensitively.
//
// In JSON a TXT is a list of strings, a string that is not UTF-8 written
// as {"base64": "..."}; an object {"key": "value", ...}, the form of the
// API and the journal before TXT kept order, reads as its pairs in the
// order written.
type TXT []string

// txtKey returns the key of a TXT string: what comes before its first '='.
func txtKey(s string) string {
	k, _, _ := strings.Cut(s, "=")
	return k
}

// Lookup returns the value of key: ok is false when the record has no
// such key; a boolean attribute has the value "". Only the first string
// with the key counts (RFC 6763 section 6.4).
func (t TXT) Lookup(key string) (value string, ok bool) {
	for _, s := range t {
		if k, v, _ := strings.Cut(s, "="); SameName(k, key) {
			return v, true
		}
	}
	return "", false
}

// Set returns t with s in it: in place of the first string with the same
// key, or at the end. t is not modified.
func (t TXT) Set(s string) TXT {
	out := make(TXT, 0, len(t)+1)
	k := txtKey(s)
	done := false
	for _, x := range t {
		if !done && SameName(txtKey(x), k) {
			x, done = s, true
		}
		out = append(out, x)
	}
	if !done {
		out = append(out, s)
	}
	return out
}

// Without returns t without the strings equal to s, keys compared
// case-insensitively and the rest byte for byte ("duplex" is not
// "duplex="). t is not modified.
func (t TXT) Without(s string) TXT {
	k := txtKey(s)
	rest := s[len(k):]
	var out TXT
	for _, x := range t {
		if xk := txtKey(x); SameName(xk, k) && x[len(xk):] == rest {
			continue
		}
		out = append(out, x)
	}
	return out
}

// check validates a TXT record: at most MaxTXT strings, each one
// character-string (at most 255 bytes), with a key of printable ASCII
// but '=' (RFC 6763 section 6.4).
func (t TXT) check() error {
	if len(t) > MaxTXT {
		return &FieldError{"txt", strconv.Itoa(len(t)) + " strings", "at most " + strconv.Itoa(MaxTXT)}
	}
	for _, s := range t {
		k := txtKey(s)
		if k == "" || len(s) > 255 || !printableASCII(k) {
			return &FieldError{"txt", s, "want key=value or a boolean key: the key 1+ printable ASCII characters without '=', the whole at most 255 bytes (RFC 6763 section 6)"}
		}
	}
	return nil
}

// checkUnique refuses a key given twice, which a client would read only
// once (RFC 6763 section 6.4).
func (t TXT) checkUnique() error {
	for i, s := range t {
		for _, x := range t[:i] {
			if SameName(txtKey(x), txtKey(s)) {
				return &FieldError{"txt", s, "key " + strconv.Quote(txtKey(s)) + " given twice"}
			}
		}
	}
	return nil
}

func (t TXT) MarshalJSON() ([]byte, error) {
	b := []byte{'['}
	for i, s := range t {
		if i > 0 {
			b = append(b, ',')
		}
		item, err := Octets(s).MarshalJSON()
		if err != nil {
			return nil, err
		}
		b = append(b, item...)
	}
	return append(b, ']'), nil
}

func (t *TXT) UnmarshalJSON(b []byte) error {
	b = bytes.TrimSpace(b)
	switch {
	case bytes.Equal(b, []byte("null")):
		*t = nil
		return nil
	case len(b) > 0 && b[0] == '[':
		var items []Octets
		if err := json.Unmarshal(b, &items); err != nil {
			return &FieldError{"txt", "", "want a list of strings: " + err.Error()}
		}
		out := make(TXT, len(items))
		for i, s := range items {
			out[i] = string(s)
		}
		*t = out
		return nil
	case len(b) > 0 && b[0] == '{':
		out, err := objectPairs(b)
		if err != nil {
			return &FieldError{"txt", "", "want an object of string values: " + err.Error()}
		}
		*t = out
		return nil
	}
	return &FieldError{"txt", string(b), `want a list of strings, such as ["txtvers=1", "duplex", "paper=A4"], or an object of key/value strings`}
}

// objectPairs reads a JSON object of strings as key=value strings, in the
// order written.
func objectPairs(b []byte) (TXT, error) {
	dec := json.NewDecoder(bytes.NewReader(b))
	if _, err := dec.Token(); err != nil { // {
		return nil, err
	}
	out := TXT{}
	for dec.More() {
		tok, err := dec.Token()
		if err != nil {
			return nil, err
		}
		k, _ := tok.(string)
		if k == "" || strings.Contains(k, "=") {
			return nil, fmt.Errorf("key %q: a key is not empty and has no '='", k)
		}
		var v string
		if err := dec.Decode(&v); err != nil {
			return nil, fmt.Errorf("key %q: %w", k, err)
		}
		out = append(out, k+"="+v)
	}
	if _, err := dec.Token(); err != nil { // }
		return nil, err
	}
	if dec.More() {
		return nil, errors.New("data after the object")
	}
	return out, nil
}
