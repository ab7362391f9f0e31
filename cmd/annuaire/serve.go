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
	"runtime"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/miekg/dns"
	"golang.org/x/sync/errgroup"

	"github.com/annuaire/annuaire/authority"
	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/resolver"
	"github.com/annuaire/annuaire/services/echo"
	"github.com/annuaire/annuaire/services/mail"
	"github.com/annuaire/annuaire/services/netserver"
	"github.com/annuaire/annuaire/services/web"
)

// serveFlags is the command line of "annuaire serve".
type serveFlags struct {
	zone, dns                 string
	hosted                    map[string]*string // by flag: the address of each hosted service
	data, advertise, hostname string
	echoMode                  string
	backlog                   int
	token, tokenFile          string
	tokenPrefix               bool
	tokenMaxInstances         int
	maxInstances              int
	tokenRate                 float64
	listenLAN                 string
	tsig, tsigFiles           listFlag
	notify, allowTransfer     listFlag
	webAllowHosts             listFlag
	dnsLimits                 dnsLimitFlags
	logLevel, logFormat       string
	drain                     time.Duration
	recover                   bool
	zones                     *zoneFlags // --ns, --soa-*, --reverse
	zoneConfig                zone.Config
	nsHosts                   []nsHost
	webMaxConns, webPerClient int

	keys  []tsig.Key     // --tsig, parsed
	allow []netip.Prefix // --allow-transfer, parsed
}

// listFlag is a repeatable string flag.
type listFlag []string

func (l *listFlag) String() string     { return strings.Join(*l, ",") }
func (l *listFlag) Set(s string) error { *l = append(*l, s); return nil }

func parseServeFlags(e *env, args []string) (*serveFlags, error) {
	f := &serveFlags{hosted: map[string]*string{}}
	fs := newFlagSet(e, "serve")
	fs.StringVar(&f.zone, "zone", registry.DefaultZone, "the `zone` to answer for")
	fs.StringVar(&f.dns, "dns", "127.0.0.1:1053", "DNS `address` (UDP and TCP)")
	for _, h := range hostedServices() {
		f.hosted[h.flag] = fs.String(h.flag, h.addr, h.usage())
	}
	fs.StringVar(&f.listenLAN, "listen-lan", "", "serve DNS and the web page and API on this `IP` (a lab room's network), on the ports of --dns and --web, and say so loudly: for a class, with a token per student")
	fs.StringVar(&f.data, "data", defaultDataDir(e), "state `directory`: registry journal, lock, API token")
	fs.StringVar(&f.advertise, "advertise", "", "`IP` to publish for services bound to a wildcard address")
	fs.StringVar(&f.hostname, "hostname", "", "host `name` in the zone for the hosted services (default: this machine's name)")
	fs.StringVar(&f.echoMode, "echo-mode", "concurrent", "echo server design: iterative, concurrent, process, select or epoll (also poll)")
	fs.IntVar(&f.backlog, "backlog", 0, "listen(2) backlog of the echo service (0: the system's)")
	fs.StringVar(&f.token, "token", "", "bearer `token` for API writes, visible in ps: prefer --token-file (default: $ANNUAIRE_TOKEN, else read or create DATA/token)")
	fs.StringVar(&f.tokenFile, "token-file", "", "`file` holding the bearer token for API writes")
	fs.BoolVar(&f.tokenPrefix, "token-prefix", false, "a student's service names must start with its token's name and a hyphen (alice-echo); else names are free, first come first served")
	fs.IntVar(&f.maxInstances, "max-instances", registry.DefaultMaxInstances, "how many instances the directory may hold: past it, a registration is refused (HTTP 409, UPDATE REFUSED); what the journal holds is always loaded, a replacement always accepted (0: no limit)")
	fs.IntVar(&f.tokenMaxInstances, "token-max-instances", web.DefaultTokenMaxInstances, "how many instances a student token may hold, unless its own --max-instances says (0: no limit)")
	fs.Float64Var(&f.tokenRate, "token-rate", web.DefaultTokenRate, "writes per `second` a student token may make, in bursts of twice that; past it, HTTP 429")
	fs.Var(&f.tsig, "tsig", "TSIG key `alg[-bits]:name:base64secret` allowed to UPDATE and transfer, visible in ps: prefer --tsig-file (repeatable); -bits (BIND's hmac-sha256-128) accepts MACs truncated to that many bits")
	fs.Var(&f.tsigFiles, "tsig-file", "`file` of TSIG keys, as tsig-keygen prints them (nsupdate -k reads the same file) or alg:name:secret lines; $ANNUAIRE_TSIG is read the same way (repeatable)")
	fs.Var(&f.notify, "notify", "secondary `HOST:PORT` to NOTIFY on every change (repeatable)")
	fs.Var(&f.allowTransfer, "allow-transfer", "`CIDR` allowed to AXFR/IXFR without a key (repeatable)")
	fs.StringVar(&f.logLevel, "log-level", "info", "log `level`: debug, info, warn, error")
	fs.StringVar(&f.logFormat, "log-format", "text", "log `format`: text or json")
	fs.DurationVar(&f.drain, "drain", netserver.DefaultDrainTimeout, "how long connections in flight get to finish at shutdown")
	fs.BoolVar(&f.recover, "recover", false, "start on a damaged journal with every intact record, dropping the damage (kept aside as FILE.damaged)")
	fs.Var(&f.webAllowHosts, "web-allow-host", "a `name` the page is reached by, besides localhost, IP addresses, the zone's names and this machine's: on a loopback --web, a request for another name is refused against DNS rebinding (repeatable)")
	fs.IntVar(&f.webMaxConns, "web-max-conns", web.DefaultMaxConns, "web connections open at once, event streams included (lowered to fit the file-descriptor limit)")
	fs.IntVar(&f.webPerClient, "web-max-conns-per-client", web.DefaultMaxConnsPerClient, "web connections open at once from one IP address")
	f.dnsLimits.register(fs)
	f.zones = addZoneFlags(fs)
	if err := parseFlags(e, fs, args); err != nil {
		return nil, err
	}
	bad := func(format string, a ...any) error {
		return usageError{err: fmt.Errorf(format, a...)}
	}
	if fs.NArg() > 0 {
		return nil, bad("serve takes no arguments, got %q", fs.Args())
	}
	// The zone's names are host names too (the hosted services' hosts
	// live in it), so it follows the registry's rule for them; miekg/dns
	// alone would take "bad zone!" (any byte is a label's in DNS).
	f.zone = dns.CanonicalName(f.zone)
	if f.zone == "." {
		return nil, bad("--zone %q: annuaire serves a zone below the root, such as %s", f.zone, registry.DefaultZone)
	}
	if err := registry.ValidHostName(strings.TrimSuffix(f.zone, ".")); err != nil {
		return nil, bad("--zone %q is not a domain name: %v", f.zone, err)
	}
	if f.hostname != "" {
		if err := registry.ValidHostName(f.hostname); err != nil || strings.Contains(f.hostname, ".") {
			if err == nil {
				err = errors.New("one label, without dots: the zone is appended to it")
			}
			return nil, bad("--hostname %q is not a host label: %v", f.hostname, err)
		}
	}
	if f.listenLAN != "" {
		ip, err := netip.ParseAddr(f.listenLAN)
		if err != nil || ip.Zone() != "" {
			return nil, bad("--listen-lan %q is not an IP address: give this machine's address on the room's network (ip -br addr shows it)", f.listenLAN)
		}
		if f.dns, err = onAddr(ip, f.dns); err != nil {
			return nil, bad("--dns %q: %v", f.dns, err)
		}
		if web := f.hosted["web"]; *web != "" {
			if *web, err = onAddr(ip, *web); err != nil {
				return nil, bad("--web %q: %v", *web, err)
			}
		}
	}
	var err error
	if f.zoneConfig, f.nsHosts, err = f.zones.config(f.zone); err != nil {
		return nil, bad("%v", err)
	}
	if f.advertise != "" {
		if _, err := netip.ParseAddr(f.advertise); err != nil {
			return nil, bad("--advertise %q is not an IP address", f.advertise)
		}
	}
	switch f.echoMode {
	case "iterative", "concurrent", "process", "select", "epoll", "poll":
		// A design this system cannot run is one line, not the usage.
		if err := echo.CheckMode(f.echoMode); err != nil {
			return nil, usageError{err: fmt.Errorf("--echo-mode %w", err)}
		}
	default:
		return nil, bad("--echo-mode %q: want iterative, concurrent, process, select or epoll", f.echoMode)
	}
	if _, err := parseLevel(f.logLevel); err != nil {
		return nil, bad("--log-level: %v", err)
	}
	if f.logFormat != "text" && f.logFormat != "json" {
		return nil, bad("--log-format %q: want text or json", f.logFormat)
	}
	if f.maxInstances < 0 {
		return nil, bad("--max-instances %d: want 0 (no limit) or more", f.maxInstances)
	}
	if f.tokenMaxInstances < 0 {
		return nil, bad("--token-max-instances %d: want 0 (no limit) or more", f.tokenMaxInstances)
	}
	if !(f.tokenRate > 0) || f.tokenRate > 1e6 {
		return nil, bad("--token-rate %g: want writes per second, more than 0", f.tokenRate)
	}
	if f.token != "" && f.tokenFile != "" {
		return nil, bad("--token and --token-file: give one")
	}
	if f.webMaxConns < 1 || f.webPerClient < 1 {
		return nil, bad("--web-max-conns and --web-max-conns-per-client must be at least 1")
	}
	for _, s := range f.tsig {
		k, err := tsig.ParseKey(s)
		if err != nil {
			return nil, usageError{err: fmt.Errorf("--tsig: %w", err)}
		}
		f.keys = append(f.keys, k)
	}
	for _, s := range f.allowTransfer {
		p, err := netip.ParsePrefix(s)
		if err != nil {
			return nil, usageError{err: fmt.Errorf("--allow-transfer %q: %w", s, err)}
		}
		f.allow = append(f.allow, p)
	}
	return f, nil
}

// onAddr is the address hostport with its host replaced by ip: the port
// of --dns or --web on --listen-lan's address.
func onAddr(ip netip.Addr, hostport string) (string, error) {
	_, port, err := net.SplitHostPort(hostport)
	if err != nil {
		return "", err
	}
	return net.JoinHostPort(ip.String(), port), nil
}

const serveAbout = `Runs the directory: the registry with its journal in --data, the DNS
server answering for --zone, and the services it hosts (echo, web page
and API, mail, telnet), each registered in the zone under its name with
the port it really bound. Every address is loopback unless a flag says
otherwise; any port may be :0, and the banner then shows the port the
system chose. Ctrl-C, SIGTERM or "annuaire stop" stop it gracefully: its
services deregister, connections in flight get --drain, exit 0.
`

const serveExample = `
$ annuaire serve
dns     svc.internal. served on 127.0.0.1:1053 (udp, tcp)
http    _http._tcp.svc.internal. SRV → vm.svc.internal.:8080 → 127.0.0.1:8080
echo    _echo._tcp.svc.internal. SRV → vm.svc.internal.:7007 → 127.0.0.1:7007
echo    _echo._udp.svc.internal. SRV → vm.svc.internal.:7007 → 127.0.0.1:7007
smtp    _smtp._tcp.svc.internal. SRV → vm.svc.internal.:2525 → 127.0.0.1:2525
telnet  _telnet._tcp.svc.internal. SRV → vm.svc.internal.:2323 → 127.0.0.1:2323
web     http://127.0.0.1:8080/ (API token in /home/alice/.local/state/annuaire/token)
`

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

	if err := f.readKeys(e, logger); err != nil {
		return err
	}
	fds, err := fitFDs(wantFDs(f), fdLimit())
	if err != nil {
		return err
	}
	if !fds.equal(wantFDs(f)) {
		logger.Warn("the file-descriptor limit is low: connection caps lowered to fit it", "limit", fdLimit(), "caps", fds.String())
	}

	reg, err := openRegistry(f.data, logger, f.recover)
	if err != nil {
		return err
	}
	defer reg.Close()
	keepTwoPs(e, reg)
	reg.MaxInstances = f.maxInstances
	if n := reg.Snapshot().NumInstances(); f.maxInstances > 0 && n >= f.maxInstances {
		// Lowered below what the journal holds: all of it is served, and
		// registrations resume once deregistrations make room.
		logger.Warn("the directory is full: new registrations are refused until some instances are deregistered",
			"instances", n, "max_instances", f.maxInstances)
	}

	token, tokenFrom, err := serveToken(e, f, logger)
	if err != nil {
		return err
	}

	l, err := listen(ctx, f)
	if err != nil {
		return err
	}
	defer l.close()

	zone := f.zone
	metrics := newMetrics(reg)
	dnsServer := &authority.Server{
		Registry: reg, Zone: zone, Logger: logger, Keys: f.keys,
		AllowTransfer: f.allow, Notify: f.notify, Metrics: metrics.dns,
		NS: f.zoneConfig.NS, SOA: f.zoneConfig.SOA, Reverse: f.zoneConfig.Reverse,
	}
	if err := f.dnsLimits.apply(dnsServer); err != nil {
		return usageError{err: err}
	}
	dnsServer.MaxTCPConns = fds.dnsTCP
	dnsServer.MaxTCPConnsPerClient = min(dnsServer.MaxTCPConnsPerClient, fds.dnsTCP)
	checker := &registry.Checker{Registry: reg, Logger: logger, MaxProbes: fds.probes}
	lookup := &resolver.Resolver{Server: l.dnsUDP.LocalAddr().String(), Zone: zone}
	hosts := newHostNamer(f)
	p := &process{
		flags: f, logger: logger, reg: reg, zone: zone, token: token, checker: checker, metrics: metrics,
		lookup: lookup, fds: fds,
		// The page re-runs one lookup per service type when the registry
		// changes; a resolver without cache makes its pictures the zone as
		// it is now, not as it was up to a TTL (10 s) ago.
		fresh: &resolver.Resolver{Server: lookup.Server, Zone: zone, NoCache: true},
		// The greeting names the host the zone's MX points at.
		mailbox: &mail.Receiver{Logger: logger, Hostname: hosts.base + "." + strings.TrimSuffix(zone, ".")},
		guard:   &netserver.Guard{},
	}
	for _, h := range l.hosted {
		h.srv = h.row.start(p)
		metrics.WatchConns(h.row.flag, h.srv.stats)
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
	for _, h := range l.hosted {
		for _, s := range h.sockets {
			serve(h.row.flag+"/"+s.proto, func(ctx context.Context) error { return s.serve(ctx, h.srv) })
		}
	}

	// The name servers' hosts: the zone's NS records point at them. By
	// default, ns at the DNS address.
	nsHosts := f.nsHosts
	if len(f.zoneConfig.NS) == 0 {
		nsIP, _, err := hosts.advertise(l.dnsUDP.LocalAddr())
		if err != nil {
			return err
		}
		nsHosts = []nsHost{{name: "ns", addrs: []netip.Addr{nsIP}}}
	}
	if _, err := reg.Update(func(tx *registry.Tx) error {
		for _, h := range nsHosts {
			if err := tx.PutHost(registry.Host{Name: h.name, Addrs: h.addrs, TTL: registry.DefaultTTL}); err != nil {
				return err
			}
		}
		return nil
	}); err != nil {
		return fmt.Errorf("register the name servers: %w", err)
	}
	fmt.Fprintf(e.stdout, "%-7s %s served on %s (udp, tcp)\n", "dns", zone, l.dnsUDP.LocalAddr())
	var self []*socket
	for _, h := range l.hosted {
		for _, s := range h.sockets {
			if err := publish(e, reg, hosts, zone, h.row.service, s); err != nil {
				return err
			}
			self = append(self, s)
		}
	}
	serve("heartbeat", func(ctx context.Context) error { return heartbeat(ctx, checker, self, hostedBeat) })
	if web := l.socket("web", "tcp"); web != nil {
		// http://[::]:8080/ is no address a browser can open: a wildcard
		// shows the address published for it.
		ip, port, err := hosts.advertise(web.addr())
		if err != nil {
			return err
		}
		fmt.Fprintf(e.stdout, "%-7s http://%s/ (API token %s)\n", "web", netip.AddrPortFrom(ip, port), tokenFrom)
	}
	for _, line := range exposures(f, l) {
		fmt.Fprintln(e.stdout, "warning:", line)
	}
	if f.listenLAN != "" {
		io.WriteString(e.stdout, classroomBanner(f, l))
	}
	logger.Info("annuaire serving", "zone", zone, "dns", l.dnsUDP.LocalAddr().String(), "data", f.data)

	<-gctx.Done()
	stopping.Store(true)
	runErr := context.Cause(gctx)
	if ctx.Err() != nil {
		runErr = nil // a signal: the normal way to stop
	}

	shutdowns := []func(context.Context) error{dnsServer.Shutdown}
	for _, h := range l.hosted {
		shutdowns = append(shutdowns, h.srv.shutdown)
	}
	stopServers(f, logger, reg, self, runErr == nil && len(f.notify) > 0, shutdowns)
	stopRun() // the health checker, the heartbeats and the NOTIFY loop
	if err := g.Wait(); err != nil && runErr == nil {
		runErr = err
	}
	logger.Info("annuaire stopped")
	return runErr
}

// stopServers deregisters the hosted instances first, so that DNS stops
// handing out what is going away; secondaries get the NOTIFY and a short
// while to transfer it (notify) before the DNS server closes, or they
// would hand out dead services until their SOA refresh. Then every server
// drains at once, within the one --drain period.
func stopServers(f *serveFlags, logger *slog.Logger, reg *registry.Registry, self []*socket, notify bool, shutdowns []func(context.Context) error) {
	for _, s := range self {
		if err := reg.Deregister(s.id); err != nil && !errors.Is(err, registry.ErrNotFound) {
			logger.Warn("deregister", "id", s.id, "err", err)
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), f.drain)
	defer cancel()
	if notify {
		select {
		case <-time.After(min(2*time.Second, f.drain)):
		case <-ctx.Done():
		}
	}
	var stops sync.WaitGroup
	for _, shutdown := range shutdowns {
		stops.Go(func() {
			if err := shutdown(ctx); err != nil {
				logger.Warn("shutdown", "err", err)
			}
		})
	}
	stops.Wait()
}

// keepTwoPs gives the runtime a second P on one CPU where the journal's
// syncs block. Where the journal cannot go through io_uring, its
// fdatasync(2) keeps its P until the runtime's monitor takes it back,
// which it does late (up to 10 ms) when no goroutine is runnable — and
// goroutines waiting on sockets are not runnable until someone polls the
// network. With a single P (GOMAXPROCS follows the CPU affinity and cgroup
// quota: taskset -c 0, a one-CPU container), every fsync then stalls DNS:
// under 1,000 registrations/s, TCP answers fell from 296k to 22k queries/s
// (bench/run.sh updates). A second P polls while the first waits for the
// disk. With io_uring nothing blocks, and one P on one CPU answered UDP
// 20% faster than two under the same writes. An explicit GOMAXPROCS is
// left as it is.
func keepTwoPs(e *env, reg *registry.Registry) {
	if reg.SyncBlocks() && runtime.GOMAXPROCS(0) < 2 && e.getenv("GOMAXPROCS") == "" {
		runtime.GOMAXPROCS(2)
	}
}

// publish registers one hosted socket as an instance, with a ttl check
// that the process feeds while the socket is served, and prints its chain.
func publish(e *env, reg *registry.Registry, hosts *hostNamer, zone, service string, s *socket) error {
	ip, port, err := hosts.advertise(s.addr())
	if err != nil {
		return err
	}
	host := hosts.name(ip)
	s.id = "annuaire-" + service + "-" + s.proto
	_, err = reg.Update(func(tx *registry.Tx) error {
		_, err := tx.Register(registry.Registration{
			ID: s.id, Service: service, Proto: s.proto, Host: host, Port: new(int(port)),
			Addresses: []netip.Addr{ip}, Check: hostedCheck(hostedTTL), Hosted: true,
			TXT: registry.TXT{"served-by=annuaire", "pid=" + strconv.Itoa(os.Getpid())},
		})
		return err
	})
	if err != nil {
		return fmt.Errorf("register %s/%s: %w", service, s.proto, err)
	}
	fmt.Fprintf(e.stdout, "%-7s _%s._%s.%s SRV → %s.%s:%d → %s\n",
		service, service, s.proto, zone, host, zone, port, netip.AddrPortFrom(ip, port))
	return nil
}

// listeners are every socket serve binds, opened before anything is served.
type listeners struct {
	dnsUDP net.PacketConn
	dnsTCP net.Listener
	hosted []*hosting // the hosted services enabled, in the table's order
}

func (l *listeners) close() {
	if l.dnsUDP != nil {
		l.dnsUDP.Close()
	}
	if l.dnsTCP != nil {
		l.dnsTCP.Close()
	}
	for _, h := range l.hosted {
		for _, s := range h.sockets {
			s.close()
		}
	}
}

// socket returns the flag's service's socket for proto, or nil.
func (l *listeners) socket(flag, proto string) *socket {
	for _, h := range l.hosted {
		for _, s := range h.sockets {
			if h.row.flag == flag && s.proto == proto {
				return s
			}
		}
	}
	return nil
}

// listen binds every listener. Each address that cannot be bound is one
// line naming its flag, all of them in one go: a user who runs a second
// annuaire beside the first learns every flag to change at once.
func listen(ctx context.Context, f *serveFlags) (l *listeners, err error) {
	l = &listeners{}
	var errs []error
	defer func() {
		if err = errors.Join(errs...); err != nil {
			l.close()
		}
	}()
	var lc net.ListenConfig
	if l.dnsTCP, l.dnsUDP, err = listenPair(ctx, func(addr string) (net.Listener, error) {
		return lc.Listen(ctx, "tcp", addr)
	}, f.dns); err != nil {
		errs = append(errs, flagError("--dns", f.dns, err))
	}
	for _, h := range hostedServices() {
		addr := *f.hosted[h.flag]
		if addr == "" {
			continue
		}
		sockets, err := listenHosted(ctx, f, h, addr)
		if err != nil {
			errs = append(errs, flagError("--"+h.flag, addr, err))
			continue
		}
		l.hosted = append(l.hosted, &hosting{row: h, sockets: sockets})
	}
	return l, nil
}

// exposures says, one line per flag, what listens beyond loopback and what
// anyone who reaches it can do: secure by default means loopback unless
// told otherwise, and told otherwise is said out loud.
func exposures(f *serveFlags, l *listeners) []string {
	beyond := func(a net.Addr) bool {
		ap, err := netip.ParseAddrPort(a.String())
		return err == nil && !ap.Addr().IsLoopback()
	}
	var lines []string
	if beyond(l.dnsUDP.LocalAddr()) {
		what := "anyone can query the zone; UPDATE and transfers need a TSIG key"
		if len(f.allowTransfer) > 0 {
			what += " or a source in --allow-transfer " + strings.Join(f.allowTransfer, ", ")
		}
		lines = append(lines, fmt.Sprintf("--dns %s is reachable from the network: %s", l.dnsUDP.LocalAddr(), what))
	}
	for _, h := range l.hosted {
		for _, s := range h.sockets {
			if !beyond(s.addr()) || s.proto == "udp" && slices.Contains(h.row.protos, "tcp") {
				continue // a TCP and UDP pair is one line
			}
			what := "anyone can use " + h.row.service
			if h.row.flag == "web" {
				what = "anyone can read the directory; writes and the received mail need the API token"
			}
			lines = append(lines, fmt.Sprintf("--%s %s is reachable from the network: %s", h.row.flag, s.addr(), what))
		}
	}
	return lines
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

// flagError says which flag's address could not be bound, in one line,
// with what to do when another program has it: "--echo 127.0.0.1:7007:
// address already in use: give --echo another address, or :0 for any free
// port".
func flagError(flag, addr string, err error) error {
	var errno syscall.Errno
	if errors.As(err, &errno) {
		err = errno
	}
	if errors.Is(err, errAddrInUse) {
		return fmt.Errorf("%s %s: %w: give %s another address, or :0 for any free port", flag, addr, err, flag)
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
