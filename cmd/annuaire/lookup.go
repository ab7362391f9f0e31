package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"

	"github.com/annuaire/annuaire/resolver"
)

// resolverFlags adds --server and --zone, with their defaults from the
// environment, and returns the Resolver they configure once parsed.
func resolverFlags(e *env, fs *flag.FlagSet) *resolver.Resolver {
	r := new(resolver.Resolver)
	server := e.getenv("ANNUAIRE_SERVER")
	if server == "" {
		server = resolver.Local
	}
	zone := e.getenv("ANNUAIRE_ZONE")
	if zone == "" {
		zone = "svc.internal"
	}
	fs.StringVar(&r.Server, "server", server, "DNS server to ask, `HOST:PORT` (env ANNUAIRE_SERVER; \"\" for the resolvers of /etc/resolv.conf)")
	fs.StringVar(&r.Zone, "zone", zone, "`zone` the service names live in (env ANNUAIRE_ZONE)")
	return r
}

// namesAbout says what NAME may be, for lookup's and dial's pages.
const namesAbout = `NAME is a service ("echo", "echo/udp", "mail"), a name in the zone
("echo.svc.internal"), the service's SRV name as dig shows it
("_echo._udp.svc.internal."), a DNS-SD instance ("Salle 101._ipp._tcp"),
HOST:PORT, or a mail address ("prof@example.org"). dial reaches a UDP
service over UDP.

Mail in the zone (mail, smtp, user@ZONE) follows annuaire's own convention:
the _smtp._tcp SRV record first, because an MX record cannot carry a port
and annuaire's receiver listens on 2525; then MX, then the zone's own
address. Mail for another domain follows RFC 5321 section 5.1: its MX,
then the domain's own address, nothing else.
`

const lookupAbout = `Asks the DNS server for NAME as a client does and prints each step on a
line of its own: the SRV record, the target's address, the candidates in
the order a dial tries them. The last line is the whole chain, ending
with the ADDRESS:PORT a dial would try first. A lookup that fails prints
the chain up to the failed step on stdout, the error on stderr, and
exits 1. --json prints the chain as JSON (the API's GET /api/lookup).

` + namesAbout

const lookupExample = `
$ annuaire lookup echo
echo: service echo over tcp in zone svc.internal.
  srv        _echo._tcp.svc.internal. SRV → 0 0 7007 vm.svc.internal.   (ttl 10, 127.0.0.1:1053, 1.03ms)
  address    vm.svc.internal. A → 127.0.0.1   (ttl 10, no query: the address came in the answer's additional section)
echo → _echo._tcp.svc.internal. SRV 0 0 7007 vm.svc.internal. → vm.svc.internal. A 127.0.0.1 → 127.0.0.1:7007
`

// serverHint says, after an error from a lookup that reached no DNS
// server, where the server is looked for, as the API commands do for theirs.
func serverHint(err error) error {
	if errors.Is(err, resolver.ErrServerUnreachable) {
		return fmt.Errorf("%w; is `annuaire serve` running? --server or ANNUAIRE_SERVER says where", err)
	}
	return err
}

// nameArg returns the one NAME argument, or a usage error.
func nameArg(fs *flag.FlagSet) (string, error) {
	if fs.NArg() != 1 {
		return "", usageError{err: fmt.Errorf("want one NAME, got %d arguments", fs.NArg())}
	}
	return fs.Arg(0), nil
}

// runLookup prints the chain from a name to its address:port, one step per
// line (lookupExample).
func runLookup(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "lookup")
	r := resolverFlags(e, fs)
	asJSON := fs.Bool("json", false, "print the chain as JSON, for programs")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	name, err := nameArg(fs)
	if err != nil {
		return err
	}
	c, err := r.Lookup(ctx, name)
	err = serverHint(err)
	if *asJSON {
		enc := json.NewEncoder(e.stdout)
		enc.SetIndent("", "  ")
		enc.SetEscapeHTML(false)
		if jerr := enc.Encode(c); jerr != nil {
			return jerr
		}
		return err
	}
	fmt.Fprint(e.stdout, c.Text())
	return err
}
