package main

import (
	"context"
	"flag"
	"fmt"
	"path/filepath"
	"strconv"
	"text/tabwriter"

	"github.com/annuaire/annuaire/services/web"
)

const tokenAbout = `Manages the students' tokens of a data directory. The administrator's
token (DATA/token) may change anything; a student's token may register,
heartbeat and deregister its own services only, within the limits serve
sets (--token-prefix, --token-max-instances, --token-rate).

  add NAME     makes NAME's token and prints it, alone on stdout, once: the
               data directory keeps only its hash (DATA/tokens/NAME.json).
               NAME is 1 to 12 lowercase letters, digits and hyphens, a
               letter first.
  list         lists the tokens: name, instance limit, when made.
  revoke NAME  refuses NAME's token from its next request on; the services
               it registered stay, still NAME's, for the teacher to remove.

The commands work on the files, whether "annuaire serve" runs or not: the
server reads a token's file on each request that presents it.
`

const tokenExample = `
$ export ALICE=$(annuaire token add alice)
token for alice: give it to them now, it is not shown again (~/.local/state/annuaire/tokens/alice.json keeps its hash)
$ ANNUAIRE_TOKEN=$ALICE annuaire register echo-alice 4000 --address 127.0.0.2
echo-alice-tcp-h-127-0-0-2-4000
registered _echo-alice._tcp.svc.internal. SRV 0 0 4000 h-127-0-0-2.svc.internal. → 127.0.0.2:4000
`

// runToken manages the students' tokens (package web's Tokens).
func runToken(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "token")
	data := fs.String("data", defaultDataDir(e), "the server's state `directory`")
	limit := fs.Int("max-instances", 0, "with add: how many instances the token may hold at once (default: serve's --token-max-instances)")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	given := false
	fs.Visit(func(f *flag.Flag) { given = given || f.Name == "max-instances" })
	want := func(n int) error {
		switch {
		case fs.NArg() != n && n == 1:
			return usageError{err: fmt.Errorf("%s takes no argument, got %q", fs.Arg(0), fs.Args()[1:])}
		case fs.NArg() != n:
			return usageError{err: fmt.Errorf("%s: want one NAME, got %q", fs.Arg(0), fs.Args()[1:])}
		}
		if given && fs.Arg(0) != "add" {
			return usageError{err: fmt.Errorf("%s: --max-instances goes with add", fs.Arg(0))}
		}
		return nil
	}
	store := web.TokensIn(*data)
	switch fs.Arg(0) {
	case "add":
		if err := want(2); err != nil {
			return err
		}
		if *limit < 0 {
			return usageError{err: fmt.Errorf("--max-instances %d: want 1 or more, or 0 for serve's default", *limit)}
		}
		name := fs.Arg(1)
		if err := web.ValidTokenName(name); err != nil {
			return usageError{err: fmt.Errorf("NAME %q: %w", name, err)}
		}
		tok, err := store.Add(name, *limit)
		if err != nil {
			return err
		}
		// The token alone on stdout: TOKEN=$(annuaire token add alice).
		fmt.Fprintln(e.stdout, tok)
		fmt.Fprintf(e.stderr, "token for %s: give it to them now, it is not shown again (%s keeps its hash)\n", name, filepath.Join(store.Dir, name+".json"))
		return nil
	case "list":
		if err := want(1); err != nil {
			return err
		}
		list, err := store.List()
		if err != nil {
			return err
		}
		if len(list) == 0 {
			fmt.Fprintln(e.stdout, "no student tokens (annuaire token add NAME makes one)")
			return nil
		}
		tw := tabwriter.NewWriter(e.stdout, 0, 0, 2, ' ', 0)
		fmt.Fprintln(tw, "NAME\tMAX-INSTANCES\tCREATED")
		for _, t := range list {
			n := "default"
			if t.MaxInstances > 0 {
				n = strconv.Itoa(t.MaxInstances)
			}
			fmt.Fprintf(tw, "%s\t%s\t%s\n", t.Name, n, t.Created.Format("2006-01-02 15:04:05Z07:00"))
		}
		return tw.Flush()
	case "revoke":
		if err := want(2); err != nil {
			return err
		}
		if err := store.Revoke(fs.Arg(1)); err != nil {
			return err
		}
		fmt.Fprintf(e.stderr, "token of %s revoked\n", fs.Arg(1))
		return nil
	case "":
		return usageError{err: fmt.Errorf("want add NAME, list or revoke NAME")}
	}
	return usageError{err: fmt.Errorf("unknown %q: want add NAME, list or revoke NAME", fs.Arg(0))}
}
