package registry

// DNS compares names byte for byte, with the ASCII letters A-Z folded to
// a-z and nothing else (RFC 4343 section 3, RFC 1035 section 2.3.3): a
// label is any octets, and "café" and "CAFÉ", or "bin\254" and "bin\255",
// are different names. FoldByte is that rule, and every comparison of
// names in annuaire goes through it: the registry's index keys, the DNS
// server's cache keys and zone lookups, UPDATE's owner names and the
// API's host and zone names. strings.ToLower and strings.EqualFold fold
// Unicode, and map every invalid UTF-8 byte to one rune: they must not
// be used on names.

// FoldByte folds one byte of a name: A-Z to a-z, every other byte as it is.
func FoldByte(c byte) byte {
	if 'A' <= c && c <= 'Z' {
		return c + 'a' - 'A'
	}
	return c
}

// FoldName returns name with A-Z folded to a-z and every other byte as it
// is: the form in which names are compared and indexed.
func FoldName(name string) string {
	for i := 0; i < len(name); i++ {
		if FoldByte(name[i]) != name[i] {
			b := []byte(name)
			for j := i; j < len(b); j++ {
				b[j] = FoldByte(b[j])
			}
			return string(b)
		}
	}
	return name
}

// SameName reports whether two names are the same DNS name: equal once
// folded.
func SameName(a, b string) bool {
	if len(a) != len(b) {
		return false
	}
	for i := 0; i < len(a); i++ {
		if FoldByte(a[i]) != FoldByte(b[i]) {
			return false
		}
	}
	return true
}
