package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"time"

	"github.com/miekg/dns"

	"github.com/annuaire/annuaire/authority/tsig"
	"github.com/annuaire/annuaire/authority/zone"
	"github.com/annuaire/annuaire/registry"
)

// runExport prints the zone in RFC 1035 master-file format (section 5),
// read from a data directory or transferred (AXFR) from a running server.
//
// A data directory held by a running annuaire is not read: its journal is
// being appended to, and only the process holding the lock may replay it.
// Export then refuses and says to ask the server with --server, which
// gives the same zone from one consistent snapshot.
func runExport(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "export", "[--data DIR | --server HOST:PORT [--tsig ALG:NAME:SECRET]] [--zone ZONE]")
	zoneName := fs.String("zone", registry.DefaultZone, "the `zone` to export")
	data := fs.String("data", "", "state `directory` to read, not in use by a running annuaire (default: serve's)")
	server := fs.String("server", "", "transfer the zone by AXFR from the annuaire at `HOST:PORT` instead")
	tsigKey := fs.String("tsig", "", "TSIG key `alg:name:base64secret` to sign the AXFR with")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	switch {
	case fs.NArg() > 0:
		fs.Usage()
		return usageError{fmt.Errorf("export: unexpected argument %q", fs.Arg(0))}
	case *server != "" && *data != "":
		fs.Usage()
		return usageError{errors.New("export: --data and --server exclude each other")}
	case *tsigKey != "" && *server == "":
		fs.Usage()
		return usageError{errors.New("export: --tsig goes with --server")}
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
				return usageError{fmt.Errorf("export: --tsig: %w", err)}
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
