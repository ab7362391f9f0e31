// Command annuaire runs a small service directory: an authoritative DNS
// server for one zone, the registry it answers from, the services it hosts,
// and the client that finds them by name.
//
// Usage:
//
//	annuaire serve       run the directory, its DNS server and hosted services
//	annuaire stop        stop the annuaire that runs on a data directory
//	annuaire lookup      show the chain from a name to its address:port
//	annuaire dial        connect to a service by name, like nc
//	annuaire register    add a service instance through the HTTP API
//	annuaire deregister  remove instances through the HTTP API
//	annuaire list        list the registered services
//	annuaire export      print the zone as a master file, from DIR or by AXFR
//
// Run "annuaire COMMAND -h" for a command's flags.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"

	"github.com/annuaire/annuaire/services/echo"
)

func main() {
	os.Exit(mainExit())
}

// mainExit is main without the exit, so that tests can run the real
// command in a child process of the test binary.
func mainExit() int {
	e := &env{stdin: os.Stdin, stdout: os.Stdout, stderr: os.Stderr, getenv: os.Getenv}
	ctx, stop := notifyStop(context.Background(), e.stderr)
	defer stop()
	err := Run(ctx, e, os.Args[1:])
	return exitCode(e, err)
}

// env is what a command may touch of the outside world, so that tests can
// run commands in-process.
type env struct {
	stdin  io.Reader
	stdout io.Writer
	stderr io.Writer
	getenv func(string) string
}

// usageError is a bad command line: the command's usage was printed, and
// the exit code is 2 as for any Unix command.
type usageError struct{ err error }

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// Run runs the subcommand named by args[0].
func Run(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		fmt.Fprint(e.stderr, usage)
		return usageError{errors.New("no command given")}
	}
	cmd, rest := args[0], args[1:]
	switch cmd {
	case "serve":
		return runServe(ctx, e, rest)
	case "stop":
		return runStop(ctx, e, rest)
	case "echo-child": // hidden: process mode's exécutant, re-executed by the echo server
		return echo.RunChild(ctx, rest)
	case "lookup":
		return runLookup(ctx, e, rest)
	case "dial":
		return runDial(ctx, e, rest)
	case "register":
		return runRegister(ctx, e, rest)
	case "deregister":
		return runDeregister(ctx, e, rest)
	case "list":
		return runList(ctx, e, rest)
	case "export":
		return runExport(ctx, e, rest)
	case "repair":
		return runRepair(ctx, e, rest)
	case "help", "-h", "-help", "--help":
		fmt.Fprint(e.stdout, usage)
		return nil
	default:
		fmt.Fprint(e.stderr, usage)
		return usageError{fmt.Errorf("unknown command %q", cmd)}
	}
}

const usage = `annuaire: a service directory that answers by DNS — name → address → port.

Usage: annuaire COMMAND [flags] [args]

Commands:
  serve      run the registry, its DNS server and the hosted services
  stop       stop the annuaire that runs on a data directory
  lookup     show the chain from a name to its address:port (name → SRV → host → address → port)
  dial       connect to a service by name and relay stdin/stdout, like nc
  register   add a service instance through the HTTP API; prints its id
  deregister remove an instance by id, or a service's instances by name
  list       list the registered services: name, host, address, port, health
  export     print the zone as a master file (RFC 1035), from a data directory or by AXFR
  repair     accept the loss of a damaged journal: keep every intact record, set the damage aside

Run "annuaire COMMAND -h" for a command's flags.
`

// newFlagSet returns a flag set that reports errors instead of exiting and
// prints its usage to stderr.
func newFlagSet(e *env, name, synopsis string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(e.stderr)
	fs.Usage = func() {
		fmt.Fprintf(e.stderr, "Usage: annuaire %s %s\n\nFlags:\n", name, synopsis)
		fs.PrintDefaults()
	}
	return fs
}

// parseFlags parses args, turning a bad flag into a usageError.
func parseFlags(fs *flag.FlagSet, args []string) error {
	if err := fs.Parse(args); err != nil {
		if errors.Is(err, flag.ErrHelp) {
			return err
		}
		return usageError{err}
	}
	return nil
}

func exitCode(e *env, err error) int {
	var u usageError
	switch {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case errors.As(err, &u):
		fmt.Fprintln(e.stderr, "annuaire:", err)
		return 2
	default:
		fmt.Fprintln(e.stderr, "annuaire:", err)
		return 1
	}
}
