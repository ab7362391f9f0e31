package registry

import (
	"encoding/base64"
	"encoding/json"
	"errors"
	"unicode/utf8"
)

// Octets is a string of any bytes as JSON carries it: a JSON string when
// the bytes are UTF-8, {"base64": "..."} when they are not. A JSON string
// holds Unicode text only, and encoding/json replaces each byte that is
// not UTF-8 with U+FFFD: a DNS label or TXT string (RFC 1035 sections
// 3.1 and 3.3.14: any octets) would not come back as it went. The API
// carries instance labels and subtypes in it, as the journal does.
type Octets string

func (o Octets) MarshalJSON() ([]byte, error) {
	if utf8.ValidString(string(o)) {
		return json.Marshal(string(o))
	}
	return json.Marshal(struct {
		Base64 string `json:"base64"`
	}{base64.StdEncoding.EncodeToString([]byte(o))})
}

func (o *Octets) UnmarshalJSON(b []byte) error {
	if len(b) > 0 && b[0] == '{' {
		var v struct {
			Base64 *string `json:"base64"`
		}
		if err := json.Unmarshal(b, &v); err != nil {
			return err
		}
		if v.Base64 == nil {
			return errors.New(`want a string or {"base64": "..."}`)
		}
		raw, err := base64.StdEncoding.DecodeString(*v.Base64)
		if err != nil {
			return err
		}
		*o = Octets(raw)
		return nil
	}
	var s string
	if err := json.Unmarshal(b, &s); err != nil {
		return errors.New(`want a string or {"base64": "..."}`)
	}
	*o = Octets(s)
	return nil
}
