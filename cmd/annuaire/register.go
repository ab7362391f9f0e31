package main

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"path/filepath"
	"strconv"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/annuaire/annuaire/registry"
	"github.com/annuaire/annuaire/services/web"
)

// The register, deregister and list commands change and read the directory
// of a running "annuaire serve" through its HTTP API, as any program may.

// apiFlags are the flags that say where the API is and how to be let in.
type apiFlags struct {
	web, token, tokenFile, data string
	env                         *env
}

func addAPIFlags(e *env, fs *flag.FlagSet) *apiFlags {
	f := &apiFlags{env: e}
	fs.StringVar(&f.web, "web", "", "`address` of annuaire's web API (default $ANNUAIRE_WEB, else 127.0.0.1:8080)")
	fs.StringVar(&f.token, "token", "", "API bearer `token`, visible in ps: prefer --token-file (default $ANNUAIRE_TOKEN, else the token file in --data)")
	fs.StringVar(&f.tokenFile, "token-file", "", "`file` holding the API bearer token")
	fs.StringVar(&f.data, "data", defaultDataDir(e), "the server's state `directory`, where its token file is")
	return f
}

// client resolves the flags into an API client. Writes need the token;
// reads send it when there is one, as a server that listens beyond
// loopback wants it for reads too.
func (f *apiFlags) client(writes bool) (*apiClient, error) {
	base := f.web
	if base == "" {
		base = f.env.getenv("ANNUAIRE_WEB")
	}
	if base == "" {
		base = "127.0.0.1:8080"
	}
	if !strings.Contains(base, "://") {
		base = "http://" + base
	}
	c := &apiClient{base: strings.TrimSuffix(base, "/"), http: &http.Client{Timeout: 30 * time.Second}}
	switch {
	case f.token != "":
		c.token, c.tokenFrom = f.token, "--token"
	case f.tokenFile != "":
		tok, err := web.ReadTokenFile(f.tokenFile)
		if err != nil {
			return nil, fmt.Errorf("--token-file: %w", err)
		}
		c.token, c.tokenFrom = tok, f.tokenFile
	case f.env.getenv("ANNUAIRE_TOKEN") != "":
		c.token, c.tokenFrom = f.env.getenv("ANNUAIRE_TOKEN"), "$ANNUAIRE_TOKEN"
	default:
		tok, err := web.ReadToken(f.data)
		if err != nil && writes {
			return nil, fmt.Errorf("no API token: pass --token, set ANNUAIRE_TOKEN, or point --data at the server's state directory (%v)", err)
		}
		c.token, c.tokenFrom = tok, filepath.Join(f.data, web.TokenFile)
	}
	return c, nil
}

// apiClient speaks the JSON API of package web.
type apiClient struct {
	base      string // "http://127.0.0.1:8080"
	token     string // "" if none was found (reads only)
	tokenFrom string // where the token came from: "--token", "$ANNUAIRE_TOKEN" or a file
	http      *http.Client
}

// apiError is an answer of the API with an error status; Message is the
// server's own explanation.
type apiError struct {
	Method, URL string
	Status      int
	Message     string
	Hint        string // what to do about it, if the CLI knows
}

func (e *apiError) Error() string {
	s := fmt.Sprintf("%s %s: %s (HTTP %d)", e.Method, e.URL, e.Message, e.Status)
	if e.Hint != "" {
		s += "; " + e.Hint
	}
	return s
}

// do sends body (if not nil) as JSON and decodes the answer into out (if
// not nil).
func (c *apiClient) do(ctx context.Context, method, path string, body, out any) error {
	var rd io.Reader
	if body != nil {
		b, err := json.Marshal(body)
		if err != nil {
			return err
		}
		rd = bytes.NewReader(b)
	}
	u := c.base + path
	req, err := http.NewRequestWithContext(ctx, method, u, rd)
	if err != nil {
		return fmt.Errorf("API address %q: %w", c.base, err)
	}
	if body != nil {
		req.Header.Set("Content-Type", "application/json")
	}
	if c.token != "" {
		req.Header.Set("Authorization", "Bearer "+c.token)
	}
	resp, err := c.http.Do(req)
	if err != nil {
		return fmt.Errorf("cannot reach annuaire's API at %s: %w; is `annuaire serve` running? --web or ANNUAIRE_WEB says where", c.base, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(io.LimitReader(resp.Body, 64<<20))
	if err != nil {
		return fmt.Errorf("%s %s: reading the answer: %w", method, u, err)
	}
	if resp.StatusCode >= 400 {
		var e web.ErrorBody
		if json.Unmarshal(b, &e) != nil || e.Error == "" {
			e.Error = strings.TrimSpace(string(b))
		}
		ae := &apiError{Method: method, URL: u, Status: resp.StatusCode, Message: e.Error}
		switch {
		case resp.StatusCode != http.StatusUnauthorized:
		case web.TokenName(c.token) != "": // a student's: the teacher makes another
			ae.Hint = "the token came from " + c.tokenFrom
		case c.token != "":
			ae.Hint = fmt.Sprintf("the token came from %s: give the server's with --token or ANNUAIRE_TOKEN, or its data directory with --data", c.tokenFrom)
		default:
			ae.Hint = fmt.Sprintf("no token was sent (none in --token, ANNUAIRE_TOKEN or %s): give the server's with --token or ANNUAIRE_TOKEN, or its data directory with --data", c.tokenFrom)
		}
		return ae
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: the answer is not the expected JSON: %w", method, u, err)
		}
	}
	return nil
}

const registerAbout = `Registers an instance of service NAME through the HTTP API of a running
"annuaire serve" and prints its id on stdout; stderr shows the SRV record
and the address:port the registration put in DNS. PORT defaults to the
well-known port of NAME (the IANA catalog: echo 7, http 80, mail 25, ...),
the address to the one this command connects from, the host to a name
made from the address. A --check is run by the server: an instance whose
check fails leaves DNS until it passes again, and register waits for the
first result of a tcp or http check to say so.

Writes need the server's token: --token, $ANNUAIRE_TOKEN, or the token
file in the server's data directory (--data, default serve's).
`

const registerExample = `
$ annuaire register db 5432 --address 127.0.0.2
db-tcp-h-127-0-0-2-5432
registered _db._tcp.svc.internal. SRV 0 0 5432 h-127-0-0-2.svc.internal. → 127.0.0.2:5432
`

func runRegister(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "register")
	api := addAPIFlags(e, fs)
	var addrs, txt, subtypes listFlag
	host := fs.String("host", "", "SRV target `host`, relative to the zone")
	fs.Var(&addrs, "address", "host `IP` address (repeatable)")
	proto := choice(fs, "proto", "tcp", "transport protocol", "tcp", "udp")
	instance := fs.String("instance", "", "DNS-SD instance `label` (default HOST-PORT)")
	priority := fs.Int("priority", 0, "SRV `priority`: lower is tried first")
	weight := fs.Int("weight", 0, "SRV `weight` among equal priorities")
	ttl := fs.Int("ttl", 0, "record TTL in `seconds` (default: the server's)")
	fs.Var(&subtypes, "subtype", "DNS-SD `subtype` such as _printer (repeatable; RFC 6763 section 7.1)")
	fs.Var(&txt, "txt", "TXT string `key=value`, or a boolean key alone (repeatable, served in this order)")
	check := choice(fs, "check", "", "health check: tcp connects, http GETs (2xx or 3xx pass), ttl waits for PUT /api/services/ID/heartbeat", "tcp", "http", "ttl")
	checkTarget := fs.String("check-target", "", "check `target`: HOST:PORT for tcp, a URL for http (default: the instance's address and port)")
	checkInterval := fs.Duration("check-interval", 0, "`interval` between checks; for ttl, the heartbeat deadline (default 10s)")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	pos := fs.Args()
	if len(pos) < 1 || len(pos) > 2 {
		return usageError{err: fmt.Errorf("want NAME [PORT], got %d arguments", len(pos))}
	}
	body := web.Registration{Name: pos[0], Proto: *proto, Host: *host, Addresses: addrs, Instance: registry.Octets(*instance), Priority: *priority, Weight: *weight}
	if len(pos) == 2 {
		port, err := strconv.Atoi(pos[1])
		if err != nil || port < 1 || port > 65535 {
			return usageError{err: fmt.Errorf("PORT %q is not a number from 1 to 65535", pos[1])}
		}
		body.Port = &port
	}
	fs.Visit(func(f *flag.Flag) {
		if f.Name == "ttl" {
			body.TTL = ttl // 0 is a TTL: send it only when given
		}
	})
	if len(txt) > 0 {
		body.TXT = registry.TXT(txt)
	}
	for _, st := range subtypes {
		body.Subtypes = append(body.Subtypes, registry.Octets(st))
	}
	if *check != "" {
		body.Check = &web.CheckRequest{Type: *check, Target: *checkTarget}
		if *checkInterval != 0 {
			body.Check.Interval = checkInterval.String()
		}
	} else if *checkTarget != "" || *checkInterval != 0 {
		return usageError{err: errors.New("--check-target and --check-interval need --check")}
	}

	c, err := api.client(true)
	if err != nil {
		return err
	}
	var s web.Service
	if err := c.do(ctx, http.MethodPost, "/api/services", body, &s); err != nil {
		var ae *apiError
		if errors.As(err, &ae) && ae.Status == http.StatusConflict {
			// The one conflict a registration meets: a full directory.
			ae.Hint = "the server's limit is annuaire serve --max-instances (0: no limit)"
		}
		return err
	}
	fmt.Fprintln(e.stdout, s.ID)
	chain := s.Chain.SRV + " → " + strings.Join(s.Chain.Endpoints, ", ")
	if s.Check == nil || s.Check.Type == "ttl" {
		fmt.Fprintf(e.stderr, "registered %s\n", chain)
		return nil
	}
	// The server runs a tcp or http check at once: say what it found.
	wait := min(time.Duration(s.Check.Interval), maxCheckWait)
	res, err := awaitCheck(ctx, c, s.ID, wait)
	switch {
	case err != nil:
		return err
	case res == nil:
		fmt.Fprintf(e.stderr, "registered %s; its %s check had not answered after %v (annuaire list shows its health)\n", chain, s.Check.Type, wait)
	case res.Health == registry.Critical:
		fmt.Fprintf(e.stderr, "registered, but critical: %s; DNS leaves %s out until its %s check passes\n", res.Output, s.Chain.SRV, s.Check.Type)
	default:
		fmt.Fprintf(e.stderr, "registered %s; %s\n", chain, res.Output)
	}
	return nil
}

// maxCheckWait bounds how long register waits for the first result of
// the instance's check: a check's timeout is its interval, up to 10 s.
const maxCheckWait = 5 * time.Second

// awaitCheck asks the API for instance id until its check has run, for at
// most wait; nil if it has not by then.
func awaitCheck(ctx context.Context, c *apiClient, id string, wait time.Duration) (*registry.CheckResult, error) {
	deadline := time.Now().Add(wait)
	for {
		var s web.Service
		if err := c.do(ctx, http.MethodGet, "/api/services/"+url.PathEscape(id), nil, &s); err != nil {
			return nil, err
		}
		if s.LastCheck != nil || time.Now().After(deadline) {
			return s.LastCheck, nil
		}
		select {
		case <-ctx.Done():
			return nil, ctx.Err()
		case <-time.After(50 * time.Millisecond):
		}
	}
}

const deregisterAbout = `Removes the instance with id ID, or the instance of service NAME, through
the HTTP API, and prints each id removed. A NAME that covers several
instances removes nothing unless --all is given: the refusal lists their
ids. Writes need the server's token, found as for register.
`

const deregisterExample = `
$ annuaire deregister db
db-tcp-h-127-0-0-2-5432
`

// runDeregister removes one instance by id, or the instances of a service
// by name. A name that covers several instances is refused unless --all is
// given, so that a typo cannot empty the directory; the refusal lists them.
func runDeregister(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "deregister")
	api := addAPIFlags(e, fs)
	all := fs.Bool("all", false, "remove every instance of NAME")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{err: fmt.Errorf("want one ID or NAME, got %d arguments", fs.NArg())}
	}
	arg := fs.Arg(0)
	c, err := api.client(true)
	if err != nil {
		return err
	}
	var one web.Service
	err = c.do(ctx, http.MethodGet, "/api/services/"+url.PathEscape(arg), nil, &one)
	var ae *apiError
	switch {
	case err == nil:
		return deregisterIDs(ctx, e, c, []string{one.ID})
	case !errors.As(err, &ae) || ae.Status != http.StatusNotFound:
		return err
	}
	var list []web.Service
	if err := c.do(ctx, http.MethodGet, "/api/services", nil, &list); err != nil {
		return err
	}
	name := registry.DefaultCatalog().Canonical(arg) // mail is smtp
	var ids []string
	for _, s := range list {
		if strings.EqualFold(s.Name, name) {
			ids = append(ids, s.ID)
		}
	}
	switch {
	case len(ids) == 0:
		return fmt.Errorf("deregister: no instance has id or service name %q (see annuaire list)", arg)
	case len(ids) > 1 && !*all:
		return fmt.Errorf("deregister: %q names %d instances: %s; give one id, or --all to remove them all", arg, len(ids), strings.Join(ids, ", "))
	}
	return deregisterIDs(ctx, e, c, ids)
}

func deregisterIDs(ctx context.Context, e *env, c *apiClient, ids []string) error {
	for _, id := range ids {
		if err := c.do(ctx, http.MethodDelete, "/api/services/"+url.PathEscape(id), nil, nil); err != nil {
			return err
		}
		fmt.Fprintln(e.stdout, id)
	}
	return nil
}

const listAbout = `Lists the instances registered in a running annuaire, from its HTTP API:
service name, protocol, the SRV target host, its addresses, the port,
the health and the id. Only healthy instances are in DNS. --json prints
the API's own JSON (GET /api/services), each instance with its chain.
`

const listExample = `
$ annuaire list
NAME  PROTO  HOST                       ADDRESS    PORT  HEALTH   ID
echo  tcp    vm.svc.internal.           127.0.0.1  7007  passing  annuaire-echo-tcp
db    tcp    h-127-0-0-2.svc.internal.  127.0.0.2  5432  passing  db-tcp-h-127-0-0-2-5432
`

func runList(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "list")
	api := addAPIFlags(e, fs)
	asJSON := fs.Bool("json", false, "print the API's JSON (GET /api/services) instead of a table")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() != 0 {
		return usageError{err: fmt.Errorf("unexpected argument %q", fs.Arg(0))}
	}
	c, err := api.client(false)
	if err != nil {
		return err
	}
	var raw json.RawMessage
	if err := c.do(ctx, http.MethodGet, "/api/services", nil, &raw); err != nil {
		return err
	}
	if *asJSON {
		var b bytes.Buffer
		if err := json.Indent(&b, raw, "", "  "); err != nil {
			return err
		}
		b.WriteByte('\n')
		_, err := e.stdout.Write(b.Bytes())
		return err
	}
	var list []web.Service
	if err := json.Unmarshal(raw, &list); err != nil {
		return fmt.Errorf("GET %s/api/services: the answer is not a list of services: %w", c.base, err)
	}
	if len(list) == 0 {
		fmt.Fprintln(e.stdout, "no services registered")
		return nil
	}
	tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
	fmt.Fprintln(tw, "NAME\tPROTO\tHOST\tADDRESS\tPORT\tHEALTH\tID")
	for _, s := range list {
		addrs := strings.Join(s.Addresses, ",")
		if addrs == "" {
			addrs = "-"
		}
		target := s.Chain.Target
		if target == "" {
			target = s.Host
		}
		fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%d\t%s\t%s\n", s.Name, s.Proto, target, addrs, s.Port, s.Health, s.ID)
	}
	return tw.Flush()
}
