package main

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"path/filepath"
	"slices"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/internal/atomicfile"
	"github.com/annuaire/annuaire/registry"
)

const exportAbout = `Prints zones in the master-file format of RFC 1035 section 5, which
named-checkzone, NSD, Knot and BIND read: the SOA first, then every
record, each owner name absolute. Without ZONE, the forward zone (--zone);
ZONE names others held, such as a reverse zone (0.0.127.in-addr.arpa.);
--dir writes each zone to DIR/ZONE.zone, whole or not at all, and without
ZONE every zone held. It reads a data directory (--data, default serve's)
whose server is stopped, or transfers the zones by AXFR from a running
annuaire (--server HOST:PORT), signed with --tsig if the server wants a
key. A data directory in use is refused, with the command that asks the
server instead. --ns, --soa-* and --reverse shape a zone read from a data
directory as they shape serve's. --json prints each zone, its serial, the
count and each record as a JSON document.
`

const exportExample = `
$ annuaire export --server 127.0.0.1:1053 --tsig hmac-sha256:xfr:$SECRET
; zone svc.internal. serial 1795517403, 10 records, exported by annuaire
$ORIGIN svc.internal.
$TTL 60
svc.internal.	60	IN	SOA	ns.svc.internal. hostmaster.svc.internal. 1795517403 300 60 86400 10
...
`

// runExport prints zones in RFC 1035 master-file format (section 5), read
// from a data directory or transferred (AXFR) from a running server: the
// forward zone, or the zones named (a reverse zone by its name,
// 0.0.127.in-addr.arpa.), or with --dir every zone held, one file each.
//
// A data directory held by a running annuaire is not read: its journal is
// being appended to, and only the process holding the lock may replay it.
// Export then refuses and says to ask the server with --server, which
// gives the same zones from one consistent snapshot.
func runExport(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "export")
	zoneName := fs.String("zone", registry.DefaultZone, "the forward `zone`, as serve's --zone")
	data := fs.String("data", "", "state `directory` to read, not in use by a running annuaire (default: serve's)")
	server := fs.String("server", "", "transfer the zones by AXFR from the annuaire at `HOST:PORT` instead")
	tsigKey := fs.String("tsig", "", "TSIG `key` to sign the AXFR with, as alg:name:base64secret")
	outDir := fs.String("dir", "", "write each zone to `DIR`/ZONE.zone; without ZONE arguments, every zone held")
	asJSON := fs.Bool("json", false, "print each zone, its serial and its records as JSON, for programs")
	zf := addZoneFlags(fs)
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	switch {
	case *server != "" && *data != "":
		return usageError{err: errors.New("--data and --server exclude each other: read a stopped server's directory, or ask a running one")}
	case *tsigKey != "" && *server == "":
		return usageError{err: errors.New("--tsig goes with --server")}
	case *asJSON && *outDir != "":
		return usageError{err: errors.New("--json and --dir exclude each other: --dir writes master files")}
	}
	cfg, _, err := zf.config(*zoneName)
	if err != nil {
		return usageError{err: err}
	}
	names := make([]string, fs.NArg())
	for i, a := range fs.Args() {
		if _, ok := dns.IsDomainName(a); !ok {
			return usageError{err: fmt.Errorf("%q is not a zone name", a)}
		}
		names[i] = registry.FoldName(dns.Fqdn(a))
	}

	var zones [][]dns.RR
	if *server != "" {
		var key *tsig.Key
		if *tsigKey != "" {
			k, err := tsig.ParseKey(*tsigKey)
			if err != nil {
				return usageError{err: fmt.Errorf("--tsig: %w", err)}
			}
			key = &k
		}
		zones, err = transferZones(ctx, *server, registry.FoldName(dns.Fqdn(*zoneName)), names, *outDir != "", key)
	} else {
		dir := *data
		if dir == "" {
			dir = defaultDataDir(e)
		}
		zones, err = readZones(e, dir, cfg, names, *outDir != "")
	}
	if err != nil {
		return err
	}
	if *outDir == "" {
		for _, rrs := range zones {
			write := writeZone
			if *asJSON {
				write = writeZoneJSON
			}
			if err := write(e.stdout, rrs); err != nil {
				return err
			}
		}
		return nil
	}
	if err := os.MkdirAll(*outDir, 0o755); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	for _, rrs := range zones {
		path := filepath.Join(*outDir, strings.TrimSuffix(rrs[0].Header().Name, ".")+".zone")
		if err := atomicWriteZone(path, rrs); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, path)
	}
	return nil
}

// readZones renders the zones named, held in the data directory dir: the
// forward zone when none is named, or with all every zone held.
func readZones(e *env, dir string, cfg zone.Config, names []string, all bool) ([][]dns.RR, error) {
	// registry.Open creates a missing directory: a typo must not export an
	// empty zone.
	if _, err := os.Stat(dir); err != nil {
		return nil, fmt.Errorf("export: data directory: %w", err)
	}
	logger := slog.New(slog.NewTextHandler(e.stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	reg, err := registry.Open(dir, registry.Options{Logger: logger})
	if errors.Is(err, registry.ErrLocked) {
		return nil, fmt.Errorf("export: %w: ask the running server instead: annuaire export --server HOST:PORT --tsig ALG:NAME:SECRET", err)
	}
	if err != nil {
		return nil, fmt.Errorf("export: %w", err)
	}
	defer reg.Close()
	snap := reg.Snapshot()
	z := zone.New(cfg)
	held := z.Held(snap)
	if len(names) == 0 {
		names = []string{z.Origin()}
		if all {
			names = names[:0]
			for _, h := range held {
				names = append(names, h.Name)
			}
		}
	}
	var zones [][]dns.RR
	for _, name := range names {
		rrs, ok := z.Records(snap, name)
		if !ok {
			var list []string
			for _, h := range held {
				list = append(list, h.Name)
			}
			return nil, fmt.Errorf("export: %s is not a zone held in %s (they are: %s)", name, dir, strings.Join(list, " "))
		}
		zones = append(zones, rrs)
	}
	return zones, nil
}

// transferZones fetches the zones named by AXFR from server: the forward
// zone origin when none is named, or with all, the forward zone and the
// reverse zones of its addresses' networks that the server holds (those
// it answers NOTAUTH for are not).
func transferZones(ctx context.Context, server, origin string, names []string, all bool, key *tsig.Key) ([][]dns.RR, error) {
	if len(names) == 0 {
		names = []string{origin}
	}
	var zones [][]dns.RR
	for _, name := range names {
		rrs, err := transferZone(ctx, server, name, key)
		if err != nil {
			return nil, err
		}
		zones = append(zones, rrs)
	}
	if !all || len(names) > 1 || names[0] != origin {
		return zones, nil
	}
	var nets []netip.Prefix
	for _, rr := range zones[0] {
		var a netip.Addr
		switch rr := rr.(type) {
		case *dns.A:
			a, _ = netip.AddrFromSlice(rr.A)
		case *dns.AAAA:
			a, _ = netip.AddrFromSlice(rr.AAAA)
		default:
			continue
		}
		if n := registry.ReverseNet(a); !slices.Contains(nets, n) {
			nets = append(nets, n)
		}
	}
	slices.SortFunc(nets, func(a, b netip.Prefix) int { return a.Addr().Compare(b.Addr()) })
	for _, n := range nets {
		name, err := dns.ReverseAddr(n.Addr().String())
		if err != nil {
			continue
		}
		// ReverseAddr names the address: the zone is its /24 or /64.
		labels := dns.SplitDomainName(name)
		if n.Addr().Is4() {
			labels = labels[1:]
		} else {
			labels = labels[16:]
		}
		rrs, err := transferZone(ctx, server, dns.Fqdn(strings.Join(labels, ".")), key)
		if err != nil {
			if strings.Contains(err.Error(), "NOTAUTH") {
				continue // not a zone the server holds
			}
			return nil, err
		}
		zones = append(zones, rrs)
	}
	return zones, nil
}

// transferZone fetches the zone by AXFR (RFC 5936) from server, signed with
// key if not nil, and returns it without the closing SOA.
func transferZone(ctx context.Context, server, origin string, key *tsig.Key) ([]dns.RR, error) {
	m := new(dns.Msg)
	m.SetAxfr(origin)
	t := &dns.Transfer{DialTimeout: 5 * time.Second, ReadTimeout: 10 * time.Second}
	if key != nil {
		t.TsigSecret = map[string]string{key.Name: key.Secret}
		m.SetTsig(key.Name, key.Algorithm, 300, time.Now().Unix())
	}
	ch, err := t.In(m, server)
	if err != nil {
		return nil, fmt.Errorf("export: AXFR %s from %s: %w", origin, server, err)
	}
	defer func() {
		for range ch { // let In's goroutine finish and close the connection
		}
	}()
	var rrs []dns.RR
	for {
		select {
		case <-ctx.Done():
			t.Close()
			return nil, ctx.Err()
		case env, ok := <-ch:
			if !ok {
				if len(rrs) < 2 {
					return nil, fmt.Errorf("export: AXFR %s from %s: transfer cut short", origin, server)
				}
				return rrs[:len(rrs)-1], nil // the SOA that closes the transfer
			}
			if env.Error != nil {
				return nil, fmt.Errorf("export: AXFR %s from %s: %w%s", origin, server, env.Error, rcodeHint(env.Error))
			}
			rrs = append(rrs, env.RR...)
		}
	}
}

// rcodeHint names the rcode in miekg's "bad xfr rcode: 5", and says what
// a refusal usually means.
func rcodeHint(err error) string {
	var n int
	if _, scanErr := fmt.Sscanf(err.Error(), "dns: bad xfr rcode: %d", &n); scanErr != nil {
		return ""
	}
	if n == dns.RcodeRefused {
		return " (REFUSED: sign with a --tsig key the server knows, or transfer from an address in its --allow-transfer)"
	}
	return " (" + dns.RcodeToString[n] + ")"
}

// atomicWriteZone writes a zone to path whole or not at all: a secondary
// or a checker that reads the file sees the old zone or the new.
func atomicWriteZone(path string, rrs []dns.RR) error {
	var b bytes.Buffer
	if err := writeZone(&b, rrs); err != nil {
		return err
	}
	if err := atomicfile.WriteFile(path, b.Bytes(), 0o644); err != nil {
		return fmt.Errorf("export: %w", err)
	}
	return nil
}

// zoneJSON is export --json's document: the master file's first line as
// fields, and the records.
type zoneJSON struct {
	Zone    string       `json:"zone"`
	Serial  uint32       `json:"serial"`
	Count   int          `json:"count"`
	Records []recordJSON `json:"records"`
}

// recordJSON is one resource record; Data is its RDATA in presentation
// format, as in the master file.
type recordJSON struct {
	Name string `json:"name"`
	TTL  uint32 `json:"ttl"`
	Type string `json:"type"`
	Data string `json:"data"`
}

func writeZoneJSON(w io.Writer, rrs []dns.RR) error {
	if len(rrs) == 0 || rrs[0].Header().Rrtype != dns.TypeSOA {
		return errors.New("export: zone without SOA")
	}
	z := zoneJSON{Zone: rrs[0].Header().Name, Serial: rrs[0].(*dns.SOA).Serial, Count: len(rrs), Records: make([]recordJSON, len(rrs))}
	for i, rr := range rrs {
		h := rr.Header()
		z.Records[i] = recordJSON{Name: zone.MasterName(h.Name), TTL: h.Ttl, Type: dns.TypeToString[h.Rrtype], Data: masterData(rr)}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(z)
}

// masterData is rr's RDATA as a master file writes it, its names as
// zone.MasterName writes them (miekg/dns's own form leaves punctuation
// unescaped that Knot's parser refuses).
func masterData(rr dns.RR) string {
	switch rr := rr.(type) {
	case *dns.SOA:
		return fmt.Sprintf("%s %s %d %d %d %d %d", zone.MasterName(rr.Ns), zone.MasterName(rr.Mbox), rr.Serial, rr.Refresh, rr.Retry, rr.Expire, rr.Minttl)
	case *dns.NS:
		return zone.MasterName(rr.Ns)
	case *dns.PTR:
		return zone.MasterName(rr.Ptr)
	case *dns.CNAME:
		return zone.MasterName(rr.Target)
	case *dns.MX:
		return fmt.Sprintf("%d %s", rr.Preference, zone.MasterName(rr.Mx))
	case *dns.SRV:
		return fmt.Sprintf("%d %d %d %s", rr.Priority, rr.Weight, rr.Port, zone.MasterName(rr.Target))
	}
	return strings.TrimPrefix(rr.String(), rr.Header().String())
}

// writeZone writes rrs, SOA first, as a master file. Every owner name is
// absolute, so the file reads the same wherever it is $INCLUDEd.
func writeZone(w io.Writer, rrs []dns.RR) error {
	if len(rrs) == 0 || rrs[0].Header().Rrtype != dns.TypeSOA {
		return errors.New("export: zone without SOA")
	}
	soa := rrs[0].(*dns.SOA)
	origin := soa.Hdr.Name
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "; zone %s serial %d, %d records, exported by annuaire\n", origin, soa.Serial, len(rrs))
	fmt.Fprintf(bw, "$ORIGIN %s\n$TTL %d\n", origin, soa.Hdr.Ttl)
	for _, rr := range rrs {
		h := rr.Header()
		fmt.Fprintf(bw, "%s\t%d\t%s\t%s\t%s\n", zone.MasterName(h.Name), h.Ttl, dns.ClassToString[h.Class], dns.TypeToString[h.Rrtype], masterData(rr))
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export: write: %w", err)
	}
	return nil
}
