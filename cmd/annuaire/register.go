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
	web, token, data string
	env              *env
}

func addAPIFlags(e *env, fs *flag.FlagSet, writes bool) *apiFlags {
	f := &apiFlags{env: e}
	fs.StringVar(&f.web, "web", "", "`address` of annuaire's web API (default $ANNUAIRE_WEB, else 127.0.0.1:8080)")
	if writes {
		fs.StringVar(&f.token, "token", "", "API bearer `token` (default $ANNUAIRE_TOKEN, else the token file in --data)")
		fs.StringVar(&f.data, "data", defaultDataDir(e), "the server's state `directory`, where its token file is")
	}
	return f
}

// client resolves the flags into an API client; writes need the token.
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
	if !writes {
		return c, nil
	}
	c.token = f.token
	if c.token == "" {
		c.token = f.env.getenv("ANNUAIRE_TOKEN")
	}
	if c.token == "" {
		tok, err := web.ReadToken(f.data)
		if err != nil {
			return nil, fmt.Errorf("no API token: pass --token, set ANNUAIRE_TOKEN, or point --data at the server's state directory (%v)", err)
		}
		c.token = tok
	}
	return c, nil
}

// apiClient speaks the JSON API of package web.
type apiClient struct {
	base  string // "http://127.0.0.1:8080"
	token string // "" for reads
	http  *http.Client
}

// apiError is an answer of the API with an error status; Message is the
// server's own explanation.
type apiError struct {
	Method, URL string
	Status      int
	Message     string
}

func (e *apiError) Error() string {
	return fmt.Sprintf("%s %s: %s (HTTP %d)", e.Method, e.URL, e.Message, e.Status)
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
		return fmt.Errorf("cannot reach annuaire's API at %s (is \"annuaire serve\" running? --web or ANNUAIRE_WEB says where): %w", c.base, err)
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
		return &apiError{Method: method, URL: u, Status: resp.StatusCode, Message: e.Error}
	}
	if out != nil {
		if err := json.Unmarshal(b, out); err != nil {
			return fmt.Errorf("%s %s: the answer is not the expected JSON: %w", method, u, err)
		}
	}
	return nil
}

// parseInterspersed parses flags that may come before, between or after the
// positional arguments ("register echo 7007 --host lab"), which the flag
// package alone stops at.
func parseInterspersed(fs *flag.FlagSet, args []string) ([]string, error) {
	var pos []string
	for {
		if err := parseFlags(fs, args); err != nil {
			return nil, err
		}
		rest := fs.Args()
		if len(rest) == 0 {
			return pos, nil
		}
		if len(args) > len(rest) && args[len(args)-len(rest)-1] == "--" {
			return append(pos, rest...), nil // everything after "--" is positional
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
}

func runRegister(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "register", "NAME [PORT] [flags]\n\nRegisters an instance of service NAME and prints its id. PORT defaults to\nthe well-known port of NAME; the host defaults to a name made from the\naddress, and the address to the one this command connects from.")
	api := addAPIFlags(e, fs, true)
	var addrs, txt listFlag
	host := fs.String("host", "", "SRV target `host`, relative to the zone")
	fs.Var(&addrs, "address", "host `IP` address (repeatable)")
	proto := fs.String("proto", "tcp", "`protocol`: tcp or udp")
	instance := fs.String("instance", "", "DNS-SD instance `label` (default HOST-PORT)")
	priority := fs.Int("priority", 0, "SRV `priority`: lower is tried first")
	weight := fs.Int("weight", 0, "SRV `weight` among equal priorities")
	ttl := fs.Int("ttl", 0, "record TTL in `seconds` (default: the server's)")
	fs.Var(&txt, "txt", "TXT string `key=value`, or a boolean key alone (repeatable, served in this order)")
	check := fs.String("check", "", "health check `type`: tcp, http or ttl")
	checkTarget := fs.String("check-target", "", "check `target`: HOST:PORT for tcp, a URL for http (default: the instance's address and port)")
	checkInterval := fs.Duration("check-interval", 0, "`interval` between checks; for ttl, the heartbeat deadline (default 10s)")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) < 1 || len(pos) > 2 {
		fs.Usage()
		return usageError{errors.New("register: want NAME [PORT]")}
	}
	body := web.Registration{Name: pos[0], Proto: *proto, Host: *host, Addresses: addrs, Instance: *instance, Priority: *priority, Weight: *weight}
	if len(pos) == 2 {
		port, err := strconv.Atoi(pos[1])
		if err != nil || port < 1 || port > 65535 {
			fs.Usage()
			return usageError{fmt.Errorf("register: PORT %q is not a number from 1 to 65535", pos[1])}
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
	if *check != "" {
		body.Check = &web.CheckRequest{Type: *check, Target: *checkTarget}
		if *checkInterval != 0 {
			body.Check.Interval = checkInterval.String()
		}
	} else if *checkTarget != "" || *checkInterval != 0 {
		fs.Usage()
		return usageError{errors.New("register: --check-target and --check-interval need --check")}
	}

	c, err := api.client(true)
	if err != nil {
		return err
	}
	var s web.Service
	if err := c.do(ctx, http.MethodPost, "/api/services", body, &s); err != nil {
		return err
	}
	fmt.Fprintln(e.stdout, s.ID)
	fmt.Fprintf(e.stderr, "registered %s → %s\n", s.Chain.SRV, strings.Join(s.Chain.Endpoints, ", "))
	return nil
}

// runDeregister removes one instance by id, or the instances of a service
// by name. A name that covers several instances is refused unless --all is
// given, so that a typo cannot empty the directory; the refusal lists them.
func runDeregister(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "deregister", "ID|NAME [flags]\n\nRemoves the instance with that id, or the instance of service NAME.\nIf NAME has several instances, they are listed and nothing is removed\nunless --all is given.")
	api := addAPIFlags(e, fs, true)
	all := fs.Bool("all", false, "remove every instance of NAME")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 1 {
		fs.Usage()
		return usageError{errors.New("deregister: want one ID or NAME")}
	}
	arg := pos[0]
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

func runList(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "list", "[flags]\n\nLists the registered services with their chain: host, address, port.")
	api := addAPIFlags(e, fs, false)
	asJSON := fs.Bool("json", false, "print the API's JSON instead of a table")
	pos, err := parseInterspersed(fs, args)
	if err != nil {
		return err
	}
	if len(pos) != 0 {
		fs.Usage()
		return usageError{fmt.Errorf("list: unexpected argument %q", pos[0])}
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
