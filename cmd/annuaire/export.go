package main

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"strings"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/registry"
)

const exportAbout = `Prints the zone in the master-file format of RFC 1035 section 5, which
named-checkzone, NSD, Knot and BIND read: the SOA first, then every
record, each owner name absolute. It reads a data directory (--data,
default serve's) whose server is stopped, or transfers the zone by AXFR
from a running annuaire (--server HOST:PORT), signed with --tsig if the
server wants a key. A data directory in use is refused, with the command
that asks the server instead. --json prints the zone, its serial, the
count and each record as JSON.
`

const exportExample = `
$ annuaire export --server 127.0.0.1:1053 --tsig hmac-sha256:xfr:$SECRET
; zone svc.internal. serial 1795517403, 10 records, exported by annuaire
$ORIGIN svc.internal.
$TTL 60
svc.internal.	60	IN	SOA	ns.svc.internal. hostmaster.svc.internal. 1795517403 300 60 86400 10
...
`

// runExport prints the zone in RFC 1035 master-file format (section 5),
// read from a data directory or transferred (AXFR) from a running server.
//
// A data directory held by a running annuaire is not read: its journal is
// being appended to, and only the process holding the lock may replay it.
// Export then refuses and says to ask the server with --server, which
// gives the same zone from one consistent snapshot.
func runExport(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "export")
	zoneName := fs.String("zone", registry.DefaultZone, "the `zone` to export")
	data := fs.String("data", "", "state `directory` to read, not in use by a running annuaire (default: serve's)")
	server := fs.String("server", "", "transfer the zone by AXFR from the annuaire at `HOST:PORT` instead")
	tsigKey := fs.String("tsig", "", "TSIG `key` to sign the AXFR with, as alg:name:base64secret")
	asJSON := fs.Bool("json", false, "print the zone, its serial and its records as JSON, for programs")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		return usageError{err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	case *server != "" && *data != "":
		return usageError{err: errors.New("--data and --server exclude each other: read a stopped server's directory, or ask a running one")}
	case *tsigKey != "" && *server == "":
		return usageError{err: errors.New("--tsig goes with --server")}
	}
	origin := dns.CanonicalName(*zoneName)

	var (
		rrs []dns.RR
		err error
	)
	if *server != "" {
		var key *tsig.Key
		if *tsigKey != "" {
			k, err := tsig.ParseKey(*tsigKey)
			if err != nil {
				return usageError{err: fmt.Errorf("--tsig: %w", err)}
			}
			key = &k
		}
		rrs, err = transferZone(ctx, *server, origin, key)
	} else {
		dir := *data
		if dir == "" {
			dir = defaultDataDir(e)
		}
		rrs, err = readZone(e, dir, origin)
	}
	if err != nil {
		return err
	}
	if *asJSON {
		return writeZoneJSON(e.stdout, origin, rrs)
	}
	return writeZone(e.stdout, origin, rrs)
}

// readZone renders the zone held in the data directory dir.
func readZone(e *env, dir, origin string) ([]dns.RR, error) {
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
	return zone.New(origin, "").Records(reg.Snapshot()), nil
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

func writeZoneJSON(w io.Writer, origin string, rrs []dns.RR) error {
	if len(rrs) == 0 || rrs[0].Header().Rrtype != dns.TypeSOA {
		return errors.New("export: zone without SOA")
	}
	z := zoneJSON{Zone: origin, Serial: rrs[0].(*dns.SOA).Serial, Count: len(rrs), Records: make([]recordJSON, len(rrs))}
	for i, rr := range rrs {
		h := rr.Header()
		z.Records[i] = recordJSON{
			Name: h.Name, TTL: h.Ttl, Type: dns.TypeToString[h.Rrtype],
			Data: strings.TrimPrefix(rr.String(), h.String()),
		}
	}
	enc := json.NewEncoder(w)
	enc.SetIndent("", "  ")
	enc.SetEscapeHTML(false)
	return enc.Encode(z)
}

// writeZone writes rrs, SOA first, as a master file. Every owner name is
// absolute, so the file reads the same wherever it is $INCLUDEd.
func writeZone(w io.Writer, origin string, rrs []dns.RR) error {
	if len(rrs) == 0 || rrs[0].Header().Rrtype != dns.TypeSOA {
		return errors.New("export: zone without SOA")
	}
	soa := rrs[0].(*dns.SOA)
	bw := bufio.NewWriter(w)
	fmt.Fprintf(bw, "; zone %s serial %d, %d records, exported by annuaire\n", origin, soa.Serial, len(rrs))
	fmt.Fprintf(bw, "$ORIGIN %s\n$TTL %d\n", origin, soa.Hdr.Ttl)
	for _, rr := range rrs {
		fmt.Fprintln(bw, rr.String())
	}
	if err := bw.Flush(); err != nil {
		return fmt.Errorf("export: write: %w", err)
	}
	return nil
}
