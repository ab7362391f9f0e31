// Package web serves the directory over HTTP: a page that lists the
// registered instances and draws, for every service type, the chain name →
// DNS record → host → address → port → process as the client's own Lookup
// finds it (chains.go), and the JSON API that reads and changes the
// registry.
//
// The server renders the page (page.go, page.html, draw.go), so that it
// needs no script; its script only swaps in what the server renders again
// after a change (/events) or for the lookup box.
//
// Reads are open to anyone who can reach the listener, but for the
// received mail when the listener is reachable beyond loopback; writes
// (register, deregister, heartbeat) need the bearer token. The page and its files are
// embedded in the binary and load nothing from the network.
package web

import (
	"context"
	"embed"
	"io/fs"
	"log/slog"
	"net"
	"net/http"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/resolver"
	"github.com/annuaire/annuaire/services/mail"
	"github.com/annuaire/annuaire/services/netserver"
)

// Defaults for the zero values of Server's fields.
const (
	DefaultMaxBody = 64 << 10 // bytes; a registration is a few hundred
)

// ErrServerClosed is returned by Serve after Shutdown: net/http's, as for
// every hosted server (see netserver).
var ErrServerClosed = http.ErrServerClosed

//go:embed static
var staticFiles embed.FS

// A LookupFunc runs a name through the client's chain:
// (*resolver.Resolver).Lookup.
type LookupFunc func(ctx context.Context, name string) (*resolver.Chain, error)

// Server is the web service. Set its fields before the first call to
// Handler or Serve; it must not be copied after that.
type Server struct {
	// Registry is the directory shown and changed. Required.
	Registry *registry.Registry

	// Zone is the DNS zone the registry's names live in, used to write the
	// records a client sees. Empty means registry.DefaultZone.
	Zone string

	// Token is the bearer token that writes must present. Empty means every
	// write is refused with 401: an API without a key must not be open.
	Token string

	// Tokens, if set, holds the student tokens (tokens.go): each may
	// write its own services only, within TokenMaxInstances and
	// TokenRate. Nil means Token is the only one.
	Tokens *Tokens
	// TokenMaxInstances is how many instances a student token may hold
	// when its own record sets no number: 0 means
	// DefaultTokenMaxInstances, a negative number no limit.
	TokenMaxInstances int
	// TokenRate is how many writes per second a student token may make,
	// in bursts of twice that; past it a write gets 429 with Retry-After.
	// 0 means DefaultTokenRate.
	TokenRate float64
	// TokenPrefix, when set, gives each student the service names that
	// start with its token's name and a hyphen (alice-echo) and only
	// those; else names are free, first come first served.
	TokenPrefix bool

	// Lookup runs a name through the client's chain and returns its
	// trace, also when it fails (a *resolver.LookupError then carries the
	// same chain). Nil means /api/lookup answers 503 and the page's lookup
	// box says lookups are not available.
	Lookup LookupFunc

	// ChainLookup runs each service type's name through the client's
	// chain to draw it on the page, once per type per registry change. It
	// should not answer from a cache: the page re-runs it when the
	// registry changes, and a cached answer would show the old chain for
	// up to its TTL. Nil means Lookup, whose cached steps the page marks.
	ChainLookup LookupFunc

	// Messages returns the mail received by the hosted mail service, for
	// /api/messages and the page. Nil means no messages.
	Messages func() []mail.Message

	// LastCheck returns what an instance's check found the last time it
	// ran ((*registry.Checker).Result), shown by the API as last_check.
	// Nil means the API shows none.
	LastCheck func(id string) (registry.CheckResult, bool)

	// Health records a heartbeat for a ttl check. Nil means heartbeats are
	// not accepted (404).
	Health func(id string) error

	// Logger receives one line per write and per refused request. Nil
	// means nothing is logged.
	Logger *slog.Logger

	// MaxBody caps request bodies in bytes; larger ones get 413. Zero
	// means DefaultMaxBody.
	MaxBody int64

	// DrainTimeout is how long Serve lets requests in flight finish once
	// its context ends. Zero means netserver.DefaultDrainTimeout.
	DrainTimeout time.Duration

	// Metrics, if set, is served at GET /metrics (Prometheus text format).
	Metrics http.Handler

	// MaxConns caps the connections Serve keeps open at once, event
	// streams included; one more is answered 503 and closed. Zero means
	// DefaultMaxConns.
	MaxConns int

	// MaxConnsPerClient caps the connections Serve keeps open at once
	// from one IP address (Consul's http_max_conns_per_client); one more
	// is answered 429 and closed. Zero means DefaultMaxConnsPerClient.
	MaxConnsPerClient int

	// MaxStreams caps the event streams open at once. Zero means half of
	// the connection caps, in total and per address, so that streams never
	// hold every connection that the API and the page need.
	MaxStreams, MaxStreamsPerClient int

	// AllowedHosts are the names, besides IP addresses, localhost and the
	// names of Zone, that requests may give in their Host header when
	// Serve listens on a loopback address. There a page of any site that
	// makes its own name resolve to 127.0.0.1 (DNS rebinding) could read
	// the API as if it were its own origin; a Host the server does not
	// know is answered 421 Misdirected Request instead.
	AllowedHosts []string

	// StreamWriteTimeout is how long a write to an event stream may wait
	// for its reader before the stream is closed. Zero means
	// DefaultStreamWriteTimeout.
	StreamWriteTimeout time.Duration

	accepted, open atomic.Int64 // connections, counted by ConnState
	refused        atomic.Int64 // connections beyond a cap
	conns, streams *slots
	linger         chan struct{}  // a slot per refused connection lingering
	lookups        chan struct{}  // a slot per lookup running
	changes        feed           // /api/events' events
	pages          [numLangs]feed // /events' events, in each language

	// encoders holds a slot per event stream encoding a snapshot chunk:
	// as many as the Go runtime has Ps. 1,000 streams that read their
	// snapshot, each encoding it at once, made every goroutine of the
	// process, DNS's included, wait behind a thousand others for a CPU
	// (dig over UDP and TCP: 0.2 to 2 s).
	encoders chan struct{}

	// exposed: the listener is reachable beyond loopback, so the received
	// mail is shown only with the token. loopback: it is not, and the Host
	// header is checked. Serve sets both; a Handler served elsewhere has
	// neither.
	exposed, loopback atomic.Bool

	limiter writeLimiter // student tokens' writes

	initOnce sync.Once
	handler  http.Handler
	hs       *http.Server
	closing  chan struct{} // closed when Shutdown starts: event streams end
	stopped  chan struct{} // closed when Shutdown has returned
	stopOnce sync.Once
	stopErr  error

	chainCache chainCache
	dirCache   [numLangs]directoryCache
	pageCache  [numLangs]pageCache
}

func (s *Server) init() {
	s.initOnce.Do(func() {
		s.closing = make(chan struct{})
		s.stopped = make(chan struct{})
		maxConns := orDefault(s.MaxConns, DefaultMaxConns)
		perClient := orDefault(s.MaxConnsPerClient, DefaultMaxConnsPerClient)
		s.conns = newSlots(maxConns, perClient)
		s.streams = newSlots(orDefault(s.MaxStreams, max(1, maxConns/2)), orDefault(s.MaxStreamsPerClient, max(1, perClient/2)))
		s.linger = make(chan struct{}, lingerSlots(maxConns))
		s.lookups = make(chan struct{}, lookupSlots(maxConns))
		s.encoders = make(chan struct{}, runtime.GOMAXPROCS(0))
		s.handler = s.routes()
		s.hs = &http.Server{
			Handler: s.handler,
			// A slow client must not hold a connection forever; the event
			// streams set their own write deadlines.
			ReadHeaderTimeout: 5 * time.Second,
			ReadTimeout:       15 * time.Second,
			WriteTimeout:      30 * time.Second,
			IdleTimeout:       60 * time.Second,
			MaxHeaderBytes:    64 << 10,
			ErrorLog:          slog.NewLogLogger(s.logger().Handler(), slog.LevelWarn),
			ConnState:         s.countConn,
			ConnContext:       withConn,
		}
	})
}

// Stats returns how many connections the server accepted and how many are
// open now.
func (s *Server) Stats() (accepted, open int64) {
	return s.accepted.Load(), s.open.Load()
}

// Refused returns how many connections were closed at once for being
// beyond MaxConns or MaxConnsPerClient.
func (s *Server) Refused() int64 { return s.refused.Load() }

// Streams returns how many event streams are open.
func (s *Server) Streams() int {
	s.init()
	return s.streams.open()
}

func (s *Server) countConn(_ net.Conn, state http.ConnState) {
	switch state {
	case http.StateNew:
		s.accepted.Add(1)
		s.open.Add(1)
	case http.StateClosed, http.StateHijacked:
		s.open.Add(-1)
	}
}

// Handler returns the routes, for tests and for embedding in another server.
func (s *Server) Handler() http.Handler {
	s.init()
	return s.handler
}

// Serve answers HTTP on ln and closes it, under netserver's stop
// contract (net/http's own): after Shutdown it returns ErrServerClosed;
// when ctx ends it drains the requests in flight for at most DrainTimeout
// and returns nil. Any other error is the listener's.
func (s *Server) Serve(ctx context.Context, ln net.Listener) error {
	s.init()
	s.exposed.Store(!onLoopback(ln.Addr()))
	s.loopback.Store(onLoopback(ln.Addr()))
	finished := make(chan struct{})
	byCtx := context.AfterFunc(ctx, func() {
		defer close(finished)
		dctx, cancel := context.WithTimeout(context.WithoutCancel(ctx), s.drainTimeout())
		defer cancel()
		s.Shutdown(dctx)
	})
	err := s.hs.Serve(&limitListener{Listener: ln, slots: s.conns, linger: s.linger,
		refused: func(refusal) { s.refused.Add(1) }})
	if !byCtx() {
		<-finished // the end was ctx's: wait for the drain
		return nil
	}
	return err
}

// onLoopback reports whether only this machine can reach addr: a loopback
// address (127.0.0.0/8, ::1) or a Unix socket. A wildcard (0.0.0.0, ::)
// listens on every interface.
func onLoopback(addr net.Addr) bool {
	switch a := addr.(type) {
	case *net.TCPAddr:
		return a.IP.IsLoopback()
	case *net.UnixAddr:
		return true
	}
	return false
}

// private lets a read through only with the token when the listener is
// exposed beyond loopback: what it shows is not for the network, nor for
// a student's token.
func (s *Server) private(next http.HandlerFunc) http.HandlerFunc {
	authorized := s.adminOnly(next)
	return func(w http.ResponseWriter, r *http.Request) {
		if s.exposed.Load() {
			authorized(w, r)
			return
		}
		next(w, r)
	}
}

// Shutdown stops accepting connections, ends event streams, and waits for
// requests in flight to finish or for ctx to end, after which it closes the
// remaining connections. It is safe to call more than once.
func (s *Server) Shutdown(ctx context.Context) error {
	s.init()
	s.stopOnce.Do(func() {
		close(s.closing)
		err := s.hs.Shutdown(ctx)
		if err != nil {
			s.hs.Close()
		}
		s.stopErr = err
		close(s.stopped)
	})
	select {
	case <-s.stopped:
		return s.stopErr
	case <-ctx.Done():
		return ctx.Err()
	}
}

func (s *Server) routes() http.Handler {
	mux := http.NewServeMux()
	// The embedded tree is part of the build: it cannot be missing.
	static, err := fs.Sub(staticFiles, "static")
	if err != nil {
		panic(err)
	}
	files := withHeaders(http.StripPrefix("/static/", http.FileServerFS(static)))

	mux.HandleFunc("GET /{$}", s.page)
	mux.HandleFunc("GET /events", s.pageEvents)
	// A route per file rather than a lookup under "GET /static/": an
	// exact match costs the mux no allocation, a prefix match three.
	for name, a := range assets(static) {
		mux.Handle("GET /static/"+name, a)
	}
	mux.Handle("GET /static/", files)
	mux.HandleFunc("GET /healthz", s.healthz)

	mux.HandleFunc("GET /api/services", s.listServices)
	mux.HandleFunc("POST /api/services", s.authorized(s.register))
	mux.HandleFunc("GET /api/services/{id}", s.getService)
	mux.HandleFunc("DELETE /api/services/{id}", s.authorized(s.deregister))
	mux.HandleFunc("PUT /api/services/{id}/heartbeat", s.authorized(s.heartbeat))
	mux.HandleFunc("GET /api/events", s.events)
	mux.HandleFunc("GET /api/lookup", s.lookup)
	mux.HandleFunc("GET /api/chains", s.listChains)
	mux.HandleFunc("GET /api/messages", s.private(s.messages)) // mail bodies
	if s.Metrics != nil {
		mux.Handle("GET /metrics", s.Metrics)
	}

	// The same paths without a method are less specific than the ones
	// above (net/http ServeMux precedence), so they catch only the other
	// methods: 405 with Allow, in JSON like every API error.
	for path, allow := range map[string]string{
		"/api/services":                "GET, HEAD, POST",
		"/api/services/{id}":           "GET, HEAD, DELETE",
		"/api/services/{id}/heartbeat": "PUT",
		"/api/events":                  "GET, HEAD",
		"/events":                      "GET, HEAD",
		"/api/lookup":                  "GET, HEAD",
		"/api/chains":                  "GET, HEAD",
		"/api/messages":                "GET, HEAD",
		"/healthz":                     "GET, HEAD",
	} {
		mux.HandleFunc(path, methodNotAllowed(allow))
	}
	mux.HandleFunc("/api/", func(w http.ResponseWriter, r *http.Request) {
		writeError(w, http.StatusNotFound, "no such endpoint: "+r.Method+" "+r.URL.Path)
	})
	return s.checkHost(mux)
}

func (s *Server) zone() string {
	z := s.Zone
	if z == "" {
		z = registry.DefaultZone
	}
	if !strings.HasSuffix(z, ".") {
		z += "."
	}
	return registry.FoldName(z)
}

func orDefault[T int | time.Duration](v, def T) T {
	if v <= 0 {
		return def
	}
	return v
}

func (s *Server) maxBody() int64 {
	if s.MaxBody <= 0 {
		return DefaultMaxBody
	}
	return s.MaxBody
}

func (s *Server) drainTimeout() time.Duration {
	if s.DrainTimeout <= 0 {
		return netserver.DefaultDrainTimeout
	}
	return s.DrainTimeout
}

func (s *Server) logger() *slog.Logger {
	if s.Logger == nil {
		return slog.New(slog.DiscardHandler)
	}
	return s.Logger
}

func (s *Server) catalog() *registry.Catalog {
	if s.Registry.Catalog != nil {
		return s.Registry.Catalog
	}
	return registry.DefaultCatalog()
}
