package zone

import (
	"strings"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/registry"
)

// miekg/dns keeps names and TXT character-strings in presentation form,
// escaped as a zone file writes them (\. \" \\ \032 \195); the registry
// keeps the raw bytes a label or a character-string is made of (RFC 1035
// sections 3.1 and 3.3.14: any octets). The functions of this file are
// the one place where the two meet: every name the zone builds from the
// registry, and every TXT string UPDATE stores, goes through them.

// rawLabels returns the raw labels of a presentation-form name, leftmost
// first; ok is false if the name is not a valid domain name.
func rawLabels(name string) (labels []string, ok bool) {
	var buf [256]byte
	n, err := dns.PackDomainName(dns.Fqdn(name), buf[:], 0, nil, false)
	if err != nil {
		return nil, false
	}
	for i := 0; i < n; {
		l := int(buf[i])
		if l == 0 {
			break
		}
		if i+1+l > n {
			return nil, false
		}
		labels = append(labels, string(buf[i+1:i+1+l]))
		i += 1 + l
	}
	return labels, true
}

// EscapeLabel writes a raw label as miekg/dns presents it after unpacking,
// so that names built here compare equal to names read from the wire.
func EscapeLabel(raw string) string { return escape(raw, `. '@;()"\`) }

// MasterName writes a presentation-form name as a master file that every
// zone parser reads: each byte of a label other than a letter, a digit, a
// hyphen or an underscore escaped, \X when printable and \DDD otherwise.
// RFC 1035 section 5.1 needs only blanks and . ( ) ; @ $ " \ escaped, but
// Knot's parser (kzonecheck, knotd) refuses any other unescaped
// punctuation, which DNS-SD instance names carry ("Salle 2, étage",
// "C++ & co"); BIND, NSD and dnspython read the escapes as well.
func MasterName(name string) string {
	labels, ok := rawLabels(name)
	if !ok {
		return name
	}
	var b strings.Builder
	for _, l := range labels {
		for i := 0; i < len(l); i++ {
			switch c := l[i]; {
			case 'a' <= c && c <= 'z', 'A' <= c && c <= 'Z', '0' <= c && c <= '9', c == '-', c == '_':
				b.WriteByte(c)
			case c < ' ' || c > '~':
				b.WriteString(escapeDDD(c))
			default:
				b.WriteByte('\\')
				b.WriteByte(c)
			}
		}
		b.WriteByte('.')
	}
	if b.Len() == 0 {
		return "."
	}
	return b.String()
}

// EscapeString writes a raw character-string as miekg/dns keeps TXT data:
// what its unpacking gives for the same bytes.
func EscapeString(raw string) string { return escape(raw, `"\`) }

// escape puts a backslash before the bytes of special and writes \DDD for
// the bytes outside printable ASCII.
func escape(raw, special string) string {
	var b strings.Builder
	for i := 0; i < len(raw); i++ {
		c := raw[i]
		switch {
		case strings.IndexByte(special, c) >= 0:
			b.WriteByte('\\')
			b.WriteByte(c)
		case c < ' ' || c > '~':
			b.WriteString(escapeDDD(c))
		default:
			b.WriteByte(c)
		}
	}
	return b.String()
}

// UnescapeString returns the raw bytes of a character-string as miekg/dns
// keeps TXT data: the bytes its packing writes (\DDD is a byte, \X is X).
func UnescapeString(s string) string {
	if strings.IndexByte(s, '\\') < 0 {
		return s
	}
	b := make([]byte, 0, len(s))
	for i := 0; i < len(s); i++ {
		c := s[i]
		if c != '\\' {
			b = append(b, c)
			continue
		}
		i++
		if i == len(s) {
			break // a dangling backslash: miekg/dns drops it too
		}
		if i+2 < len(s) && isDigit(s[i]) && isDigit(s[i+1]) && isDigit(s[i+2]) {
			b = append(b, (s[i]-'0')*100+(s[i+1]-'0')*10+(s[i+2]-'0'))
			i += 2
			continue
		}
		b = append(b, s[i])
	}
	return string(b)
}

// txtStrings is a TXT record as miekg/dns keeps it: the registry's raw
// strings escaped, in their order, or a single empty string when there
// are none (RFC 6763 section 6.1).
func txtStrings(t registry.TXT) []string {
	if len(t) == 0 {
		return []string{""}
	}
	out := make([]string, len(t))
	for i, s := range t {
		out[i] = EscapeString(s)
	}
	return out
}

func isDigit(c byte) bool { return '0' <= c && c <= '9' }

func escapeDDD(c byte) string {
	return `\` + string([]byte{'0' + c/100, '0' + c/10%10, '0' + c%10})
}
