package web

import (
	"io"
	"io/fs"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
)

// fetch sends one request with the given header lines ("Key", "value",
// …) and does not follow redirects.
func fetch(t *testing.T, method, url string, hdr ...string) reply {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Add(hdr[i], hdr[i+1])
	}
	c := &http.Client{CheckRedirect: func(*http.Request, []*http.Request) error { return http.ErrUseLastResponse }}
	resp, err := c.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.TransferEncoding != nil {
		t.Errorf("%s %s: Transfer-Encoding %v, want a Content-Length", method, url, resp.TransferEncoding)
	}
	return reply{resp.StatusCode, resp.Header, b}
}

// checkPolicy fails unless h carries the headers that keep the page to its
// own files and make browsers revalidate it.
func checkPolicy(t *testing.T, what string, h http.Header) {
	t.Helper()
	for k, want := range map[string]string{
		"Content-Security-Policy": pageCSP,
		"X-Content-Type-Options":  "nosniff",
		"Referrer-Policy":         "no-referrer",
	} {
		if got := h.Values(k); len(got) != 1 || got[0] != want {
			t.Errorf("%s: %s %q, want %q", what, k, got, want)
		}
	}
}

func embedded(t *testing.T, name string) []byte {
	t.Helper()
	b, err := fs.ReadFile(staticFiles, "static/"+name)
	if err != nil {
		t.Fatal(err)
	}
	return b
}

func TestAssets(t *testing.T) {
	base := startServer(t, &Server{})
	etags := map[string]bool{}
	for _, tc := range []struct {
		path, file, contentType string
		ranges                  bool
	}{
		{"/", "", "text/html; charset=utf-8", false}, // rendered, see page.go
		{"/static/app.js", "app.js", "text/javascript; charset=utf-8", true},
		{"/static/style.css", "style.css", "text/css; charset=utf-8", true},
	} {
		t.Run(tc.path, func(t *testing.T) {
			r := fetch(t, "GET", base+tc.path)
			want := r.body // the page: the same registry renders the same bytes
			if tc.file != "" {
				want = embedded(t, tc.file)
			}
			if r.status != http.StatusOK || string(r.body) != string(want) {
				t.Fatalf("GET: %d, %d bytes, want 200 and the embedded %d", r.status, len(r.body), len(want))
			}
			checkPolicy(t, "200", r.header)
			for k, v := range map[string]string{
				"Content-Type":   tc.contentType,
				"Content-Length": strconv.Itoa(len(want)),
				"Cache-Control":  "no-cache",
			} {
				if got := r.header.Get(k); got != v {
					t.Errorf("200: %s %q, want %q", k, got, v)
				}
			}
			if got := r.header.Get("Accept-Ranges"); (got == "bytes") != tc.ranges {
				t.Errorf("200: Accept-Ranges %q", got)
			}
			etag := r.header.Get("ETag")
			if len(etag) < 3 || etag[0] != '"' || etag[len(etag)-1] != '"' || etags[etag] {
				t.Fatalf("ETag %q: not a distinct strong tag", etag)
			}
			etags[etag] = true

			// A browser reloading the no-cache page asks with the tag it
			// has; the same headers but no body keep its copy in force.
			for _, inm := range []string{etag, "W/" + etag, `"other", ` + etag, `"a","b" ,` + etag, "*"} {
				r := fetch(t, "GET", base+tc.path, "If-None-Match", inm)
				if r.status != http.StatusNotModified || len(r.body) != 0 {
					t.Errorf("If-None-Match %s: %d with %d bytes, want 304 without a body", inm, r.status, len(r.body))
				}
				checkPolicy(t, "304", r.header)
				if r.header.Get("ETag") != etag || r.header.Get("Cache-Control") != "no-cache" {
					t.Errorf("304: ETag %q Cache-Control %q", r.header.Get("ETag"), r.header.Get("Cache-Control"))
				}
				if ct := r.header.Get("Content-Type"); ct != "" {
					t.Errorf("304: Content-Type %q", ct)
				}
			}
			// Two field lines are one list (RFC 9110 section 5.3).
			if r := fetch(t, "GET", base+tc.path, "If-None-Match", `"other"`, "If-None-Match", etag); r.status != http.StatusNotModified {
				t.Errorf("If-None-Match on two lines: %d", r.status)
			}
			for _, inm := range []string{`"other"`, etag[:len(etag)-1], strings.Trim(etag, `"`), `W/`, `,`} {
				r := fetch(t, "GET", base+tc.path, "If-None-Match", inm)
				if r.status != http.StatusOK || len(r.body) != len(want) {
					t.Errorf("If-None-Match %s: %d with %d bytes, want the body", inm, r.status, len(r.body))
				}
			}

			r = fetch(t, "HEAD", base+tc.path)
			if r.status != http.StatusOK || len(r.body) != 0 || r.header.Get("Content-Length") != strconv.Itoa(len(want)) {
				t.Errorf("HEAD: %d, %d bytes, Content-Length %q", r.status, len(r.body), r.header.Get("Content-Length"))
			}
			checkPolicy(t, "HEAD", r.header)

			// What the fast path leaves to http.ServeContent.
			r = fetch(t, "GET", base+tc.path, "Range", "bytes=2-9")
			if r.status != http.StatusPartialContent || string(r.body) != string(want[2:10]) {
				t.Errorf("Range: %d %q, want 206 %q", r.status, r.body, want[2:10])
			}
			checkPolicy(t, "206", r.header)
			if r := fetch(t, "GET", base+tc.path, "Range", "bytes=2-9", "If-Range", `"old"`); r.status != http.StatusOK || len(r.body) != len(want) {
				t.Errorf("If-Range with another tag: %d, %d bytes, want the whole body", r.status, len(r.body))
			}
			if r := fetch(t, "GET", base+tc.path, "If-Match", `"old"`); r.status != http.StatusPreconditionFailed {
				t.Errorf("If-Match with another tag: %d, want 412", r.status)
			}
			if r := fetch(t, "GET", base+tc.path, "If-Match", etag); r.status != http.StatusOK || len(r.body) != len(want) {
				t.Errorf("If-Match with its tag: %d, %d bytes", r.status, len(r.body))
			}
		})
	}
}

// TestStaticFallback checks that what is not a prepared file still gets
// http.FileServer's answer, with the policy headers.
func TestStaticFallback(t *testing.T) {
	base := startServer(t, &Server{})
	for _, tc := range []struct {
		path     string
		status   int
		location string
	}{
		{"/static/", http.StatusOK, ""},
		{"/static/nope.js", http.StatusNotFound, ""},
	} {
		r := fetch(t, "GET", base+tc.path)
		if r.status != tc.status || r.header.Get("Location") != tc.location {
			t.Errorf("GET %s: %d Location %q, want %d %q", tc.path, r.status, r.header.Get("Location"), tc.status, tc.location)
		}
		checkPolicy(t, tc.path, r.header)
	}
}

// TestAssetSharedHeaders checks that a handler that changes a header
// after the asset set it does not change it for the next request: the
// value slices are shared.
func TestAssetSharedHeaders(t *testing.T) {
	a := newAsset([]byte("body"), "text/plain; charset=utf-8", false)
	h := http.Header{}
	setFields(h, a.validator)
	setFields(h, a.entity)
	h.Add("Cache-Control", "private")
	h.Add("Content-Type", "x")
	h.Set("Etag", `"x"`)
	h2 := http.Header{}
	setFields(h2, a.validator)
	setFields(h2, a.entity)
	if got := h2.Values("Cache-Control"); len(got) != 1 || got[0] != "no-cache" {
		t.Errorf("Cache-Control %q after another answer's Add", got)
	}
	if got := h2.Values("Content-Type"); len(got) != 1 || got[0] != "text/plain; charset=utf-8" {
		t.Errorf("Content-Type %q after another answer's Add", got)
	}
	if got := h2.Get("ETag"); got != a.etag {
		t.Errorf("ETag %q after another answer's Set", got)
	}
}

// TestAssetsConcurrent is for -race: every answer reads the same slices.
func TestAssetsConcurrent(t *testing.T) {
	base := startServer(t, &Server{})
	want := fetch(t, "GET", base+"/").body
	var wg sync.WaitGroup
	for range 8 {
		wg.Go(func() {
			for range 20 {
				resp, err := http.Get(base + "/")
				if err != nil {
					t.Error(err)
					return
				}
				b, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil || resp.StatusCode != http.StatusOK || len(b) != len(want) {
					t.Errorf("GET /: %d, %d bytes, %v", resp.StatusCode, len(b), err)
					return
				}
				checkPolicy(t, "concurrent", resp.Header)
			}
		})
	}
	wg.Wait()
}

func TestEtagListMatches(t *testing.T) {
	const tag = `"abc"`
	for _, tc := range []struct {
		lines []string
		want  bool
	}{
		{nil, false},
		{[]string{""}, false},
		{[]string{tag}, true},
		{[]string{"W/" + tag}, true},
		{[]string{"*"}, true},
		{[]string{` "x" , ` + tag + ` `}, true},
		{[]string{`"x"`, tag}, true},
		{[]string{`"abcd"`}, false},
		{[]string{`"ab"`}, false},
		{[]string{`abc`}, false},
		{[]string{`"abc`}, false},
		{[]string{`W/`}, false},
		{[]string{`"x", abc, ` + tag}, false}, // malformed: the list is not read past it
		{[]string{`w/` + tag}, false},         // the weak prefix is case-sensitive
		{[]string{`""`}, false},
	} {
		if got := etagListMatches(tc.lines, tag); got != tc.want {
			t.Errorf("etagListMatches(%q) = %v, want %v", tc.lines, got, tc.want)
		}
	}
}
