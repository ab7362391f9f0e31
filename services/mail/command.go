package mail

import (
	"errors"
	"math"
	"strconv"
	"strings"
)

// command is one parsed SMTP command line.
type command struct {
	verb string // upper-cased, e.g. "MAIL"
	arg  string // the rest of the line after one space, unchanged
}

// parseCommand splits a command line (without its line ending) into verb and
// argument. RFC 5321 section 2.4 makes verbs case-insensitive; a verb is 1
// to 10 ASCII letters (the longest in use is 8, STARTTLS).
func parseCommand(line string) (command, bool) {
	verb, arg, _ := strings.Cut(line, " ")
	if len(verb) == 0 || len(verb) > 10 {
		return command{}, false
	}
	for i := 0; i < len(verb); i++ {
		c := verb[i]
		if !('a' <= c && c <= 'z' || 'A' <= c && c <= 'Z') {
			return command{}, false
		}
	}
	return command{verb: strings.ToUpper(verb), arg: arg}, true
}

// Errors of the path and parameter parsers; the session turns them into
// 501 or 555 replies.
var (
	errSyntax      = errors.New("syntax error in parameters or arguments")
	errBadAddress  = errors.New("bad address syntax")
	errBadParam    = errors.New("parameter not recognized")
	errPathTooLong = errors.New("path too long")
)

// maxPath is RFC 5321 section 4.5.3.1.3's limit on a path, brackets
// included.
const maxPath = 256

// parsePathArg parses the argument of MAIL ("FROM:<path> params") or RCPT
// ("TO:<path> params"), prefix being "FROM:" or "TO:". It returns the
// mailbox without its brackets (source routes dropped, RFC 5321 section
// 4.1.2) and the raw ESMTP parameters.
//
// It is lenient where real clients and humans are: the prefix is
// case-insensitive, spaces may follow the colon, and a mailbox without
// brackets is taken when it has no spaces.
func parsePathArg(arg, prefix string) (path string, params []string, err error) {
	if len(arg) < len(prefix) || !strings.EqualFold(arg[:len(prefix)], prefix) {
		return "", nil, errSyntax
	}
	rest := strings.TrimLeft(arg[len(prefix):], " ")
	var raw string
	if strings.HasPrefix(rest, "<") {
		end := closingBracket(rest)
		if end < 0 {
			return "", nil, errBadAddress
		}
		raw, rest = rest[1:end], rest[end+1:]
		if rest != "" && rest[0] != ' ' {
			return "", nil, errSyntax
		}
	} else {
		raw, rest, _ = strings.Cut(rest, " ")
		if raw == "" {
			return "", nil, errSyntax
		}
		rest = " " + rest
	}
	if len(raw)+2 > maxPath {
		return "", nil, errPathTooLong
	}
	// A source route "@a,@b:user@c" is obsolete; the mailbox is after ':'.
	if strings.HasPrefix(raw, "@") {
		i := strings.IndexByte(raw, ':')
		if i < 0 {
			return "", nil, errBadAddress
		}
		raw = raw[i+1:]
	}
	if raw != "" && !validMailbox(raw) {
		return "", nil, errBadAddress
	}
	return raw, strings.Fields(rest), nil
}

// closingBracket returns the index of the '>' that closes the path opened at
// s[0], skipping a quoted local part, or -1.
func closingBracket(s string) int {
	quoted := false
	for i := 1; i < len(s); i++ {
		switch c := s[i]; {
		case quoted && c == '\\':
			i++
		case c == '"':
			quoted = !quoted
		case !quoted && c == '>':
			return i
		}
	}
	return -1
}

// validMailbox reports whether m looks like local@domain or a bare local
// part (RCPT TO:<postmaster>, RFC 5321 section 4.1.1.3): no control
// characters or spaces outside a quoted local part, no brackets, a
// non-empty domain made of labels or an address literal.
func validMailbox(m string) bool {
	at := strings.LastIndexByte(m, '@')
	local, domain := m, ""
	if at >= 0 {
		local, domain = m[:at], m[at+1:]
		if domain == "" {
			return false
		}
	}
	if local == "" || len(local) > 64 && !strings.HasPrefix(local, "\"") {
		return false
	}
	if strings.HasPrefix(local, "\"") {
		if len(local) < 2 || !strings.HasSuffix(local, "\"") {
			return false
		}
		for i := 1; i < len(local)-1; i++ {
			if c := local[i]; c < 0x20 || c == 0x7f {
				return false
			}
		}
	} else {
		for i := 0; i < len(local); i++ {
			if c := local[i]; c <= ' ' || c == 0x7f || strings.IndexByte("<>()[]\\,;:@\"", c) >= 0 {
				return false
			}
		}
	}
	if strings.HasPrefix(domain, "[") {
		return strings.HasSuffix(domain, "]") && len(domain) > 2 && !strings.ContainsAny(domain[1:len(domain)-1], "[]\\ ")
	}
	for i := 0; i < len(domain); i++ {
		c := domain[i]
		if !(c == '-' || c == '.' || '0' <= c && c <= '9' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || c >= 0x80) {
			return false
		}
	}
	return true
}

// mailParams are the MAIL parameters this server understands.
type mailParams struct {
	size int // SIZE=, RFC 1870; -1 when absent
}

// parseMailParams reads MAIL's ESMTP parameters: SIZE=n (RFC 1870) and
// BODY=7BIT|8BITMIME (RFC 6152). Anything else is errBadParam (555).
func parseMailParams(params []string) (mailParams, error) {
	p := mailParams{size: -1}
	for _, kv := range params {
		k, v, _ := strings.Cut(kv, "=")
		switch strings.ToUpper(k) {
		case "SIZE":
			n, err := strconv.Atoi(v)
			if errors.Is(err, strconv.ErrRange) && n > 0 {
				n, err = math.MaxInt, nil // too large to count is too large to take
			}
			if err != nil || n < 0 || strings.HasPrefix(v, "+") {
				return p, errSyntax
			}
			p.size = n
		case "BODY":
			switch strings.ToUpper(v) {
			case "7BIT", "8BITMIME":
			default:
				return p, errBadParam
			}
		default:
			return p, errBadParam
		}
	}
	return p, nil
}
