package web

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"testing"

	"github.com/annuaire/annuaire/registry"
)

// discardWriter is the cheapest ResponseWriter there is, so that the
// benchmark measures the handler and not httptest's recorder.
type discardWriter struct{ h http.Header }

func (w *discardWriter) Header() http.Header         { return w.h }
func (w *discardWriter) Write(b []byte) (int, error) { return len(b), nil }
func (w *discardWriter) WriteHeader(int)             {}

// benchHandler measures the route through the mux, as a request would
// take it, minus the connection: the part of the cost this package owns.
func benchHandler(b *testing.B, path string, hdr ...string) {
	h := (&Server{Registry: registry.New(1)}).Handler()
	req := httptest.NewRequest(http.MethodGet, path, nil)
	for i := 0; i+1 < len(hdr); i += 2 {
		req.Header.Set(hdr[i], hdr[i+1])
	}
	w := &discardWriter{h: http.Header{}}
	b.ReportAllocs()
	for b.Loop() {
		clear(w.h)
		h.ServeHTTP(w, req)
	}
}

func BenchmarkPageHandler(b *testing.B)    { benchHandler(b, "/") }
func BenchmarkPage304Handler(b *testing.B) { benchHandler(b, "/", "If-None-Match", pageETag(b)) }
func BenchmarkStaticHandler(b *testing.B)  { benchHandler(b, "/static/app.js") }

// pageETag is the tag a browser holding the page sends back.
func pageETag(b *testing.B) string {
	h := (&Server{Registry: registry.New(1)}).Handler()
	w := httptest.NewRecorder()
	h.ServeHTTP(w, httptest.NewRequest(http.MethodGet, "/", nil))
	return w.Header().Get("ETag")
}

// benchWire sends GET path over one keep-alive loopback connection, the
// way wrk does. The client is a few lines of byte handling that allocate
// nothing, so allocs/op is the server's: net/http's per request plus ours.
func benchWire(b *testing.B, path string, hdr ...string) {
	base := startServer(b, &Server{Registry: registry.New(1)})
	conn, err := net.Dial("tcp", strings.TrimPrefix(base, "http://"))
	if err != nil {
		b.Fatal(err)
	}
	defer conn.Close()
	req := "GET " + path + " HTTP/1.1\r\nHost: bench\r\n"
	for i := 0; i+1 < len(hdr); i += 2 {
		req += hdr[i] + ": " + hdr[i+1] + "\r\n"
	}
	reqb := []byte(req + "\r\n")
	br := bufio.NewReaderSize(conn, 64<<10)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := conn.Write(reqb); err != nil {
			b.Fatal(err)
		}
		if err := readResponse(br); err != nil {
			b.Fatal(err)
		}
	}
}

// readResponse reads one HTTP/1.1 response, with either a Content-Length
// or a chunked body, and throws it away.
func readResponse(br *bufio.Reader) error {
	var n int64
	chunked := false
	status, err := br.ReadSlice('\n')
	if err != nil {
		return err
	}
	if !bytes.HasPrefix(status, []byte("HTTP/1.1 200 ")) && !bytes.HasPrefix(status, []byte("HTTP/1.1 304 ")) {
		return io.ErrUnexpectedEOF
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		if len(line) <= 2 {
			break
		}
		if k, v, ok := bytes.Cut(line, []byte(":")); ok {
			switch {
			case bytes.EqualFold(k, []byte("Content-Length")):
				n = parseInt(bytes.TrimSpace(v), 10)
			case bytes.EqualFold(k, []byte("Transfer-Encoding")):
				chunked = true
			}
		}
	}
	if !chunked {
		_, err := br.Discard(int(n))
		return err
	}
	for {
		line, err := br.ReadSlice('\n')
		if err != nil {
			return err
		}
		size := parseInt(bytes.TrimSpace(line), 16)
		if _, err := br.Discard(int(size) + 2); err != nil {
			return err
		}
		if size == 0 {
			return nil
		}
	}
}

func parseInt(b []byte, base int64) int64 {
	var n int64
	for _, c := range b {
		switch {
		case c >= '0' && c <= '9':
			n = n*base + int64(c-'0')
		case c >= 'a' && c <= 'f':
			n = n*base + int64(c-'a'+10)
		case c >= 'A' && c <= 'F':
			n = n*base + int64(c-'A'+10)
		}
	}
	return n
}

func BenchmarkPageWire(b *testing.B)    { benchWire(b, "/") }
func BenchmarkPage304Wire(b *testing.B) { benchWire(b, "/", "If-None-Match", pageETag(b)) }
func BenchmarkStaticWire(b *testing.B)  { benchWire(b, "/static/app.js") }
func BenchmarkHealthzWire(b *testing.B) { benchWire(b, "/healthz") }
