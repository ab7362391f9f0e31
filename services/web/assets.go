package web

import (
	"bytes"
	"crypto/sha256"
	"encoding/base64"
	"io/fs"
	"mime"
	"net/http"
	"path"
	"strconv"
	"strings"
	"time"
)

// pageCSP keeps the page to its own files: no inline script, no framing,
// nothing fetched elsewhere.
const pageCSP = "default-src 'self'; img-src 'self' data:; frame-ancestors 'none'; base-uri 'none'; form-action 'self'"

// field is one response header, its value slice built once and shared by
// every answer: net/http clones the header map before writing it and
// never changes a value in place, and a handler's Set or Add replaces or
// reallocates the slice (its capacity is its length) rather than write
// into it.
type field struct {
	key   string // canonical form, since it is used as a map key directly
	value []string
}

func newField(key, value string) field {
	return field{http.CanonicalHeaderKey(key), []string{value}}
}

func setFields(h http.Header, fields []field) {
	for _, f := range fields {
		h[f.key] = f.value
	}
}

// policyFields are the headers everything the page loads carries.
func policyFields() []field {
	return []field{
		newField("Content-Security-Policy", pageCSP),
		newField("X-Content-Type-Options", "nosniff"),
		newField("Referrer-Policy", "no-referrer"),
	}
}

// asset is an embedded file ready to answer with. The files change only
// with the binary, so their bytes, validator and headers are computed once
// at start instead of per request.
type asset struct {
	body []byte
	etag string // strong, quoted: `"…"`

	// validator goes on a 200 and a 304 alike (RFC 9110 section 15.4.5
	// wants the 304 to carry what the 200 would have for Cache-Control
	// and ETag; the policy headers come along so that a cache merging the
	// 304 into its stored answer keeps them).
	validator []field
	// entity describes the body and goes only with it.
	entity []field
	// contentType is set before http.ServeContent so that it does not
	// sniff.
	contentType field
}

// newAsset builds the answer for body. ranges says whether 200s advertise
// Accept-Ranges; every asset honours a Range either way (RFC 9110 section
// 14.3 lets a client send one unasked).
func newAsset(body []byte, contentType string, ranges bool) *asset {
	sum := sha256.Sum256(body)
	a := &asset{
		body:        body,
		etag:        `"` + base64.RawURLEncoding.EncodeToString(sum[:16]) + `"`,
		contentType: newField("Content-Type", contentType),
	}
	a.validator = append(policyFields(),
		// The files are not named after their content, so a browser must
		// ask each time whether they changed: with the ETag that costs a
		// 304, and a page from a new binary never runs an old app.js.
		newField("Cache-Control", "no-cache"),
		newField("ETag", a.etag),
	)
	a.entity = []field{
		a.contentType,
		// Without it a body over net/http's 2 KiB buffer goes out chunked.
		newField("Content-Length", strconv.Itoa(len(body))),
	}
	if ranges {
		a.entity = append(a.entity, newField("Accept-Ranges", "bytes"))
	}
	return a
}

func (a *asset) ServeHTTP(w http.ResponseWriter, r *http.Request) {
	h := w.Header()
	setFields(h, a.validator)
	// The rare preconditions and ranges go to net/http's full
	// implementation (RFC 9110 section 13.2.2 order, If-Range, multipart
	// ranges); it reads the ETag set above.
	if r.Header["Range"] != nil || r.Header["If-Match"] != nil || r.Header["If-Unmodified-Since"] != nil {
		h[a.contentType.key] = a.contentType.value
		http.ServeContent(w, r, "", time.Time{}, bytes.NewReader(a.body))
		return
	}
	// Every load of a no-cache page by a browser that has it asks this.
	// If-Modified-Since is ignored: there is no Last-Modified to match.
	if etagListMatches(r.Header["If-None-Match"], a.etag) {
		w.WriteHeader(http.StatusNotModified)
		return
	}
	setFields(h, a.entity)
	if r.Method == http.MethodHead {
		w.WriteHeader(http.StatusOK)
		return
	}
	w.Write(a.body)
}

// etagListMatches says whether If-None-Match field lines name etag, by the
// weak comparison RFC 9110 section 13.1.2 prescribes for it: W/"x" matches
// "x". A malformed list matches nothing, so the client gets the body.
func etagListMatches(lines []string, etag string) bool {
	for _, s := range lines {
		for {
			s = strings.TrimLeft(s, " \t,")
			if s == "" {
				break
			}
			if s[0] == '*' {
				return true
			}
			s = strings.TrimPrefix(s, "W/")
			if len(s) < 2 || s[0] != '"' {
				return false
			}
			end := strings.IndexByte(s[1:], '"')
			if end < 0 {
				return false
			}
			if s[:end+2] == etag {
				return true
			}
			s = s[end+2:]
		}
	}
	return false
}

// assets builds the answer for every file under root except index.html
// files, which http.FileServer redirects to their directory: the fallback
// keeps doing that, and directory listings and 404s.
func assets(root fs.FS) map[string]*asset {
	out := map[string]*asset{}
	err := fs.WalkDir(root, ".", func(name string, d fs.DirEntry, err error) error {
		if err != nil || d.IsDir() || path.Base(name) == "index.html" {
			return err
		}
		b, err := fs.ReadFile(root, name)
		if err != nil {
			return err
		}
		// What http.FileServer would say, so the fast path changes no
		// Content-Type.
		ct := mime.TypeByExtension(path.Ext(name))
		if ct == "" {
			ct = http.DetectContentType(b)
		}
		out[name] = newAsset(b, ct, true)
		return nil
	})
	if err != nil {
		panic(err) // the embedded tree is part of the build
	}
	return out
}
