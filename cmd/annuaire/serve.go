package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/netip"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"strings"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/errgroup"

	"github.com/annuaire/annuaire/authority"
	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/resolver"
	"github.com/annuaire/annuaire/services/echo"
	"github.com/annuaire/annuaire/services/mail"
	"github.com/annuaire/annuaire/services/netserver"
	"github.com/annuaire/annuaire/services/telnet"
	"github.com/annuaire/annuaire/services/web"
)

// serveFlags is the command line of "annuaire serve".
type serveFlags struct {
	zone, dns, web, echo, mail, telnet string
	data, advertise, hostname          string
	echoMode                           string
	backlog                            int
	token                              string
	tsig, notify, allowTransfer        listFlag
	dnsLimits                          dnsLimitFlags
	logLevel, logFormat                string
	drain                              time.Duration
	recover                            bool
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func parseServeFlags(e *env, args []string) (*serveFlags, error) {
	f := &serveFlags{}
	fs := newFlagSet(e, "serve", "[flags]")
	fs.StringVar(&f.zone, "zone", registry.DefaultZone, "the `zone` to answer for")
	fs.StringVar(&f.dns, "dns", "127.0.0.1:1053", "DNS `address` (UDP and TCP)")
	fs.StringVar(&f.web, "web", "127.0.0.1:8080", "web page and HTTP API `address`")
	fs.StringVar(&f.echo, "echo", "127.0.0.1:7007", "echo service `address` (TCP and UDP); \"\" to disable")
	fs.StringVar(&f.mail, "mail", "127.0.0.1:2525", "SMTP receiver `address`; \"\" to disable")
	fs.StringVar(&f.telnet, "telnet", "127.0.0.1:2323", "telnet console `address`; \"\" to disable")
	fs.StringVar(&f.data, "data", defaultDataDir(e), "state `directory`: registry journal, lock, API token")
	fs.StringVar(&f.advertise, "advertise", "", "`IP` to publish for services bound to a wildcard address")
	fs.StringVar(&f.hostname, "hostname", "", "host `name` in the zone for the hosted services (default: this machine's name)")
	fs.StringVar(&f.echoMode, "echo-mode", "concurrent", "echo server design: iterative, concurrent, process or poll")
	fs.IntVar(&f.backlog, "backlog", 0, "listen(2) backlog of the echo service (0: the system's)")
	fs.StringVar(&f.token, "token", "", "bearer `token` for API writes (default: read or create DATA/token)")
	fs.Var(&f.tsig, "tsig", "TSIG key `alg[-bits]:name:base64secret` allowed to UPDATE and transfer (repeatable); -bits (BIND's hmac-sha256-128) accepts MACs truncated to that many bits")
	fs.Var(&f.notify, "notify", "secondary `HOST:PORT` to NOTIFY on every change (repeatable)")
	fs.Var(&f.allowTransfer, "allow-transfer", "`CIDR` allowed to AXFR/IXFR without a key (repeatable)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log `format`: text or json")
	fs.DurationVar(&f.drain, "drain", netserver.DefaultDrainTimeout, "how long connections in flight get to finish at shutdown")
	fs.BoolVar(&f.recover, "recover", false, "start on a damaged journal with every intact record, dropping the damage (kept aside as FILE.damaged)")
	f.dnsLimits.register(fs)
	if err := parseFlags(fs, args); err != nil {
		return nil, err
	}
	bad := func(format string, a ...any) error {
		fs.Usage()
		return usageError{fmt.Errorf(format, a...)}
	}
	if fs.NArg() > 0 {
		return nil, bad("serve takes no arguments, got %q", fs.Args())
	}
	f.zone = dns.CanonicalName(f.zone)
	if _, ok := dns.IsDomainName(f.zone); !ok || f.zone == "." {
		return nil, bad("--zone %q is not a domain name", f.zone)
	}
	if f.advertise != "" {
		if _, err := netip.ParseAddr(f.advertise); err != nil {
			return nil, bad("--advertise %q is not an IP address", f.advertise)
		}
	}
	switch f.echoMode {
	case "iterative", "concurrent", "process", "poll":
		// A design this system cannot run is one line, not the usage.
		if err := echo.CheckMode(f.echoMode); err != nil {
			return nil, usageError{fmt.Errorf("--echo-mode %w", err)}
		}
	default:
		return nil, bad("--echo-mode %q: want iterative, concurrent, process or poll", f.echoMode)
	}
	if _, err := parseLevel(f.logLevel); err != nil {
		return nil, bad("--log-level: %v", err)
	}
	if f.logFormat != "text" && f.logFormat != "json" {
		return nil, bad("--log-format %q: want text or json", f.logFormat)
	}
	return f, nil
}

// runServe runs the directory: it binds every listener first (so a port in
// use fails before anything starts), registers the hosted services with the
// ports really bound, serves until ctx ends, then deregisters them and
// drains connections.
func runServe(ctx context.Context, e *env, args []string) error {
	f, err := parseServeFlags(e, args)
	if err != nil {
		return err
	}
	logger := newLogger(e.stderr, f.logLevel, f.logFormat)

	keys := make([]tsig.Key, 0, len(f.tsig))
	for _, s := range f.tsig {
		k, err := tsig.ParseKey(s)
		if err != nil {
			return usageError{fmt.Errorf("--tsig: %w", err)}
		}
		keys = append(keys, k)
	}
	var allow []netip.Prefix
	for _, s := range f.allowTransfer {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return usageError{fmt.Errorf("--allow-transfer %q: %w", s, err)}
		}
		allow = append(allow, p)
	}

	reg, err := openRegistry(f.data, logger, f.recover)
	if err != nil {
		return err
	}
	defer reg.Close()
	// Where the journal cannot go through io_uring, its fdatasync(2)
	// keeps its P until the runtime's monitor takes it back, which it
	// does late (up to 10 ms) when no goroutine is runnable — and
	// goroutines waiting on sockets are not runnable until someone polls
	// the network. With a single P (GOMAXPROCS follows the CPU affinity
	// and cgroup quota: taskset -c 0, a one-CPU container), every fsync
	// then stalls DNS: under 1,000 registrations/s, TCP answers fell from
	// 296k to 22k queries/s (bench/run.sh updates). A second P polls
	// while the first waits for the disk. With io_uring nothing blocks,
	// and one P on one CPU answered UDP 20% faster than two under the
	// same writes. An explicit GOMAXPROCS is left as it is.
	if reg.SyncBlocks() && runtime.GOMAXPROCS(0) < 2 && e.getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2)
	}

	token := f.token
	if token == "" {
		if token, err = web.LoadOrCreateToken(f.data); err != nil {
			return err
		}
	}

	l, err := listen(ctx, f)
	if err != nil {
		return err
	}
	defer l.close()

	zone := f.zone
	metrics := newMetrics(reg)
	dnsServer := &authority.Server{
		Registry: reg, Zone: zone, Logger: logger, Keys: keys,
		AllowTransfer: allow, Notify: f.notify, Metrics: metrics.dns,
	}
	if err := f.dnsLimits.apply(dnsServer); err != nil {
		return usageError{err}
	}
	checker := &registry.Checker{Registry: reg, Logger: logger}
	lookup := &resolver.Resolver{Server: l.dnsUDP.LocalAddr().String(), Zone: zone}
	// The page re-runs one lookup per service type when the registry
	// changes; a resolver without cache makes its pictures the zone as it
	// is now, not as it was up to a TTL (10 s) ago.
	fresh := &resolver.Resolver{Server: lookup.Server, Zone: zone, NoCache: true}
	// Datagram services share a Guard: none of them answers another.
	guard := &netserver.Guard{}
	echoServer := &echo.Server{Mode: f.echoMode, Guard: guard, DrainTimeout: f.drain, Logger: logger}
	hosts := newHostNamer(f)
	// The greeting names the host the zone's MX points at.
	mailbox := &mail.Receiver{Logger: logger, Hostname: hosts.base + "." + strings.TrimSuffix(zone, ".")}
	mailServer := &netserver.Server{Name: "mail", Handle: mailbox.Handle, Refusal: mailbox.Refusal(), DrainTimeout: f.drain, Logger: logger}
	console := &telnet.Console{
		List: func(ctx context.Context) (string, error) { return directoryText(reg.Snapshot(), zone), nil },
		Lookup: func(ctx context.Context, name string) (string, error) {
			chain, err := lookup.Lookup(ctx, name)
			if chain == nil {
				return "", err
			}
			return chain.Text(), err
		},
	}
	telnetServer := &netserver.Server{Name: "telnet", Handle: console.Handle, Refusal: telnet.Refusal, DrainTimeout: f.drain, Logger: logger}
	webServer := &web.Server{
		Registry: reg, Zone: zone, Token: token, Logger: logger, DrainTimeout: f.drain,
		Lookup:      lookup.Lookup,
		ChainLookup: fresh.Lookup,
		Messages:    func() any { return mailbox.Messages() },
		Health:      checker.Heartbeat,
		Metrics:     metrics.Handler(),
	}
	metrics.WatchConns("web", webServer.Stats)
	metrics.WatchConns("echo", func() (int64, int64) { st := echoServer.Stats(); return st.Accepted, st.Active })
	metrics.WatchConns("mail", func() (int64, int64) { st := mailServer.Stats(); return st.Accepted, st.Active })
	metrics.WatchConns("telnet", func() (int64, int64) { st := telnetServer.Stats(); return st.Accepted, st.Active })

	var self []registry.Instance
	publish := func(service, proto string, addr net.Addr, check *registry.Check) error {
		ip, port, err := hosts.advertise(addr)
		if err != nil {
			return err
		}
		host := hosts.name(ip)
		inst := registry.Instance{
			ID: "annuaire-" + service + "-" + proto, Service: service, Proto: proto,
			Host: host, Port: port, Check: check, TTL: registry.DefaultTTL,
			TXT: registry.TXT{"served-by=annuaire", "pid=" + strconv.Itoa(os.Getpid())},
		}
		if _, err := reg.Register(inst, &registry.Host{Name: host, Addrs: []netip.Addr{ip}, TTL: registry.DefaultTTL, Auto: true}); err != nil {
			return fmt.Errorf("register %s/%s: %w", service, proto, err)
		}
		self = append(self, inst)
		fmt.Fprintf(e.stdout, "%-7s _%s._%s.%s SRV → %s.%s:%d → %s\n",
			service, service, proto, zone, host, zone, port, netip.AddrPortFrom(ip, port))
		return nil
	}

	// Every server runs until it is shut down explicitly, in order, below;
	// gctx only tells that it is time: a signal, or one server failing.
	g, gctx := errgroup.WithContext(ctx)
	runCtx, stopRun := context.WithCancel(context.WithoutCancel(ctx))
	defer stopRun()
	var stopping atomic.Bool
	serve := func(name string, fn func(context.Context) error) {
		g.Go(func() error {
			if err := fn(runCtx); err != nil && !stopping.Load() {
				return fmt.Errorf("%s: %w", name, err)
			}
			return nil
		})
	}
	serve("dns/udp", func(ctx context.Context) error { return dnsServer.ServePacket(ctx, l.dnsUDP) })
	serve("dns/tcp", func(ctx context.Context) error { return dnsServer.Serve(ctx, l.dnsTCP) })
	serve("notify", dnsServer.RunNotify)
	serve("health", checker.Run)
	serve("web", func(ctx context.Context) error { return webServer.Serve(ctx, l.web) })
	if l.echoTCP != nil {
		serve("echo/tcp", func(ctx context.Context) error { return echoServer.Serve(ctx, l.echoTCP) })
		serve("echo/udp", func(ctx context.Context) error { return echoServer.ServePacket(ctx, l.echoUDP) })
	}
	if l.mail != nil {
		serve("mail", func(ctx context.Context) error { return mailServer.Serve(ctx, l.mail) })
	}
	if l.telnet != nil {
		serve("telnet", func(ctx context.Context) error { return telnetServer.Serve(ctx, l.telnet) })
	}

	// The name server's own host: the zone's NS record points at it.
	nsIP, _, err := hosts.advertise(l.dnsUDP.LocalAddr())
	if err != nil {
		return err
	}
	if _, err := reg.Update(func(tx *registry.Tx) error {
		return tx.PutHost(registry.Host{Name: "ns", Addrs: []netip.Addr{nsIP}})
	}); err != nil {
		return fmt.Errorf("register ns: %w", err)
	}
	fmt.Fprintf(e.stdout, "%-7s %s served on %s (udp, tcp)\n", "dns", zone, l.dnsUDP.LocalAddr())
	webCheck := &registry.Check{Type: "http", Target: "http://" + l.web.Addr().String() + "/healthz", Interval: registry.Duration(5 * time.Second)}
	tcpCheck := func(a net.Addr) *registry.Check {
		return &registry.Check{Type: "tcp", Target: a.String(), Interval: registry.Duration(5 * time.Second)}
	}
	err = publish("http", "tcp", l.web.Addr(), webCheck)
	if err == nil && l.echoTCP != nil {
		err = publish("echo", "tcp", l.echoTCP.Addr(), tcpCheck(l.echoTCP.Addr()))
		if err == nil {
			err = publish("echo", "udp", l.echoUDP.LocalAddr(), tcpCheck(l.echoTCP.Addr()))
		}
	}
	if err == nil && l.mail != nil {
		err = publish("smtp", "tcp", l.mail.Addr(), tcpCheck(l.mail.Addr()))
	}
	if err == nil && l.telnet != nil {
		err = publish("telnet", "tcp", l.telnet.Addr(), tcpCheck(l.telnet.Addr()))
	}
	if err != nil {
		return err
	}
	fmt.Fprintf(e.stdout, "%-7s http://%s/ (API token in %s)\n", "web", l.web.Addr(), filepath.Join(f.data, "token"))
	logger.Info("annuaire serving", "zone", zone, "dns", l.dnsUDP.LocalAddr().String(), "web", l.web.Addr().String(), "data", f.data)

	<-gctx.Done()
	stopping.Store(true)
	runErr := context.Cause(gctx)
	if ctx.Err() != nil {
		runErr = nil // a signal: the normal way to stop
	}

	// Deregister first, so that DNS stops handing out what is going away;
	// secondaries get the NOTIFY and a short while to transfer it before
	// the DNS server closes, or they would hand out dead services until
	// their SOA refresh. Then connections in flight get the drain period.
	for _, inst := range self {
		if err := reg.Deregister(inst.ID); err != nil && !errors.Is(err, registry.ErrNotFound) {
			logger.Warn("deregister", "id", inst.ID, "err", err)
		}
	}
	drainCtx, cancel := context.WithTimeout(context.Background(), f.drain)
	defer cancel()
	if len(f.notify) > 0 && runErr == nil {
		select {
		case <-time.After(min(2*time.Second, f.drain)):
		case <-drainCtx.Done():
		}
	}
	for _, s := range []interface{ Shutdown(context.Context) error }{dnsServer, webServer, echoServer, mailServer, telnetServer} {
		if err := s.Shutdown(drainCtx); err != nil {
			logger.Warn("shutdown", "err", err)
		}
	}
	stopRun() // the health checker and the NOTIFY loop
	if err := g.Wait(); err != nil && runErr == nil {
		runErr = err
	}
	logger.Info("annuaire stopped")
	return runErr
}

// listeners are every socket serve binds, opened before anything is served.
type listeners struct {
	dnsUDP, echoUDP       net.PacketConn
	dnsTCP, web           net.Listener
	echoTCP, mail, telnet net.Listener
}

func (l *listeners) close() {
	for _, c := range []io.Closer{l.dnsUDP, l.echoUDP, l.dnsTCP, l.web, l.echoTCP, l.mail, l.telnet} {
		if c != nil {
			c.Close()
		}
	}
}

// listen binds every listener; the first failure is one line naming the
// flag and the address.
func listen(ctx context.Context, f *serveFlags) (l *listeners, err error) {
	l = &listeners{}
	defer func() {
		if err != nil {
			l.close()
		}
	}()
	var lc net.ListenConfig
	if l.dnsTCP, l.dnsUDP, err = listenPair(ctx, func(addr string) (net.Listener, error) {
		return lc.Listen(ctx, "tcp", addr)
	}, f.dns); err != nil {
		return l, flagError("--dns", f.dns, err)
	}
	if l.web, err = lc.Listen(ctx, "tcp", f.web); err != nil {
		return l, flagError("--web", f.web, err)
	}
	if f.echo != "" {
		if l.echoTCP, l.echoUDP, err = listenPair(ctx, func(addr string) (net.Listener, error) {
			return echo.Listen(ctx, "tcp", addr, f.backlog)
		}, f.echo); err != nil {
			return l, flagError("--echo", f.echo, err)
		}
	}
	if f.mail != "" {
		if l.mail, err = lc.Listen(ctx, "tcp", f.mail); err != nil {
			return l, flagError("--mail", f.mail, err)
		}
	}
	if f.telnet != "" {
		if l.telnet, err = lc.Listen(ctx, "tcp", f.telnet); err != nil {
			return l, flagError("--telnet", f.telnet, err)
		}
	}
	return l, nil
}

// listenPair binds TCP and UDP on the same port. With port 0 the UDP port
// the OS picks for TCP may be taken, so it tries a few times.
func listenPair(ctx context.Context, listenTCP func(string) (net.Listener, error), addr string) (net.Listener, net.PacketConn, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return nil, nil, err
	}
	var lc net.ListenConfig
	for try := 0; ; try++ {
		ln, err := listenTCP(addr)
		if err != nil {
			return nil, nil, err
		}
		udpAddr := net.JoinHostPort(host, strconv.Itoa(ln.Addr().(*net.TCPAddr).Port))
		pc, err := lc.ListenPacket(ctx, "udp", udpAddr)
		if err == nil {
			return ln, pc, nil
		}
		ln.Close()
		if port != "0" || try == 10 || !errors.Is(err, errAddrInUse) {
			return nil, nil, err
		}
	}
}

// flagError says which flag's address could not be bound, in one line:
// "--echo 127.0.0.1:7007: address already in use".
func flagError(flag, addr string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		return fmt.Errorf("%s %s: %w", flag, addr, errno)
	}
	return fmt.Errorf("%s %s: %w", flag, addr, err)
}

// hostNamer names the hosts that hosted services run on. Services bound to
// the same address share one host name; a second address gets a name of
// its own, so that an SRV target's A record is always the listen address.
type hostNamer struct {
	base  string
	fixed netip.Addr // --advertise
	names map[netip.Addr]string
}

func newHostNamer(f *serveFlags) *hostNamer {
	base := f.hostname
	if base == "" {
		base, _ = os.Hostname()
	}
	base = hostLabel(base)
	h := &hostNamer{base: base, names: map[netip.Addr]string{}}
	if f.advertise != "" {
		h.fixed = netip.MustParseAddr(f.advertise)
	}
	return h
}

// advertise returns the address to publish for a bound address: itself,
// or --advertise (else the first non-loopback interface address) when it
// is a wildcard.
func (h *hostNamer) advertise(a net.Addr) (netip.Addr, uint16, error) {
	ap, err := netip.ParseAddrPort(a.String())
	if err != nil {
		return netip.Addr{}, 0, fmt.Errorf("advertise %s: %w", a, err)
	}
	ip := ap.Addr().Unmap()
	if !ip.IsUnspecified() {
		return ip, ap.Port(), nil
	}
	if h.fixed.IsValid() {
		return h.fixed, ap.Port(), nil
	}
	addrs, _ := net.InterfaceAddrs()
	for _, ia := range addrs {
		if p, err := netip.ParsePrefix(ia.String()); err == nil && !p.Addr().IsLoopback() && p.Addr().Is4() {
			return p.Addr(), ap.Port(), nil
		}
	}
	return netip.MustParseAddr("127.0.0.1"), ap.Port(), nil
}

func (h *hostNamer) name(ip netip.Addr) string {
	if n, ok := h.names[ip]; ok {
		return n
	}
	n := h.base
	if len(h.names) > 0 {
		n = h.base + "-" + strings.NewReplacer(".", "-", ":", "-").Replace(ip.String())
	}
	h.names[ip] = n
	return n
}

// hostLabel turns a machine name into one valid DNS label.
func hostLabel(s string) string {
	s, _, _ = strings.Cut(strings.ToLower(s), ".")
	var b strings.Builder
	for _, r := range s {
		if r >= 'a' && r <= 'z' || r >= '0' && r <= '9' || r == '-' {
			b.WriteRune(r)
		}
	}
	out := strings.Trim(b.String(), "-")
	if len(out) > 63 {
		out = out[:63]
	}
	if out == "" {
		return "host"
	}
	return out
}

// directoryText is the directory as the telnet console's "list" prints it.
func directoryText(s *registry.Snapshot, zone string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "%-10s %-5s %-28s %-6s %s\n", "SERVICE", "PROTO", "HOST", "PORT", "HEALTH")
	for inst := range s.All() {
		fmt.Fprintf(&b, "%-10s %-5s %-28s %-6d %s\n", inst.Service, inst.Proto, inst.Host+"."+zone, inst.Port, inst.Health)
	}
	return b.String()
}

func parseLevel(s string) (slog.Level, error) {
	var l slog.Level
	err := l.UnmarshalText([]byte(s))
	return l, err
}

func newLogger(w io.Writer, level, format string) *slog.Logger {
	l, _ := parseLevel(level)
	opts := &slog.HandlerOptions{Level: l}
	if format == "json" {
		return slog.New(slog.NewJSONHandler(w, opts))
	}
	return slog.New(slog.NewTextHandler(w, opts))
}
