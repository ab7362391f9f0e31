package tsig

import (
	"fmt"
	"strings"
)

// ParseKeyFile reads the keys of a key file, for `annuaire serve
// --tsig-file`: secrets in a file are not shown by ps, as a command line
// is. A file holds lines in the syntax of ParseKey,
// hmac-sha256:ddns-key:BASE64 (blank lines and lines starting with # are
// left out), or BIND's key statements, as tsig-keygen prints them and
// nsupdate -k reads them, so that the server and nsupdate share one file:
//
//	key "ddns-key" {
//		algorithm hmac-sha256;
//		secret "c2VjcmV0IQ==";
//	};
//
// The two forms may be mixed. Comments in the BIND form are #, // and
// /* */. Errors give the line and never echo a secret.
func ParseKeyFile(text string) ([]Key, error) {
	var keys []Key
	tok := &keyTokens{s: text, line: 1}
	for {
		t, line, err := tok.next()
		if err != nil {
			return nil, err
		}
		switch {
		case t == "":
			return keys, nil
		case t == "key":
			k, err := tok.statement(line)
			if err != nil {
				return nil, err
			}
			keys = append(keys, k)
		default:
			if strings.ContainsAny(t, "{};\"") {
				return nil, fmt.Errorf("line %d: want a key statement or ALGORITHM:NAME:SECRET", line)
			}
			k, err := ParseKey(t)
			if err != nil {
				return nil, fmt.Errorf("line %d: %w", line, err)
			}
			keys = append(keys, k)
		}
	}
}

// keyTokens splits a key file into words, quoted strings and the
// punctuation { } ;, skipping blanks and comments.
type keyTokens struct {
	s    string
	line int
}

// next returns the next token and its line; "" at the end. A quoted
// string comes back with its quotes.
func (k *keyTokens) next() (string, int, error) {
	for len(k.s) > 0 {
		switch c := k.s[0]; {
		case c == '\n':
			k.line++
			k.s = k.s[1:]
		case c == ' ' || c == '\t' || c == '\r':
			k.s = k.s[1:]
		case c == '#' || strings.HasPrefix(k.s, "//"):
			i := strings.IndexByte(k.s, '\n')
			if i < 0 {
				i = len(k.s)
			}
			k.s = k.s[i:]
		case strings.HasPrefix(k.s, "/*"):
			i := strings.Index(k.s, "*/")
			if i < 0 {
				return "", k.line, fmt.Errorf("line %d: comment not closed", k.line)
			}
			k.line += strings.Count(k.s[:i], "\n")
			k.s = k.s[i+2:]
		case c == '{' || c == '}' || c == ';':
			k.s = k.s[1:]
			return string(c), k.line, nil
		case c == '"':
			i := strings.IndexAny(k.s[1:], "\"\n")
			if i < 0 || k.s[1+i] != '"' {
				return "", k.line, fmt.Errorf("line %d: quoted string not closed", k.line)
			}
			t := k.s[:i+2]
			k.s = k.s[i+2:]
			return t, k.line, nil
		default:
			i := strings.IndexAny(k.s, " \t\r\n{};\"#")
			if i < 0 {
				i = len(k.s)
			}
			t := k.s[:i]
			k.s = k.s[i:]
			return t, k.line, nil
		}
	}
	return "", k.line, nil
}

// statement reads the rest of a key statement: NAME { algorithm ALG;
// secret "SECRET"; };
func (k *keyTokens) statement(line int) (Key, error) {
	bad := func(format string, a ...any) (Key, error) {
		return Key{}, fmt.Errorf("line %d: key statement: "+format, append([]any{line}, a...)...)
	}
	name, _, err := k.next()
	if err != nil {
		return Key{}, err
	}
	name = strings.Trim(name, `"`)
	if name == "" || name == "{" {
		return bad("no name")
	}
	if t, _, _ := k.next(); t != "{" {
		return bad("want { after the name %q", name)
	}
	var alg, secret string
	for {
		field, l, err := k.next()
		if err != nil {
			return Key{}, err
		}
		if field == "}" {
			break
		}
		value, _, err := k.next()
		if err != nil {
			return Key{}, err
		}
		if t, _, _ := k.next(); t != ";" {
			return bad("want ; after %s at line %d", field, l)
		}
		switch field {
		case "algorithm":
			alg = strings.Trim(value, `"`)
		case "secret":
			secret = strings.Trim(value, `"`)
		default:
			return bad("unknown field %q at line %d", field, l)
		}
	}
	if t, _, _ := k.next(); t != ";" {
		return bad("want ; after }")
	}
	if alg == "" || secret == "" {
		return bad("key %q needs an algorithm and a secret", name)
	}
	key, err := ParseKey(alg + ":" + name + ":" + secret)
	if err != nil {
		return Key{}, fmt.Errorf("line %d: %w", line, err)
	}
	return key, nil
}
