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
//	annuaire token       add, list and revoke the students' tokens
//	annuaire export      print the zone as a master file, from DIR or by AXFR
//	annuaire repair      accept the loss of a damaged journal
//	annuaire help        show a command's help page
//	annuaire version     print the version
//	annuaire completion  print a shell's completion script
//
// "annuaire help COMMAND" shows a command's flags, with an example.
package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"strings"

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

	// inspect, when set, receives a command's flag set in place of
	// running the command: completion reads every command's flags so.
	inspect func(*flag.FlagSet)
}

// usageError is a bad command line: one line says what is wrong, one
// where to read more, and the exit code is 2 as for any Unix command.
type usageError struct {
	cmd string // the subcommand, if the error is one of its command line
	err error
}

func (u usageError) Error() string { return u.err.Error() }
func (u usageError) Unwrap() error { return u.err }

// A subcommand is one command of annuaire. Its help page (annuaire CMD --help,
// annuaire help CMD) is made of summary, args, about, the flags and
// example.
type subcommand struct {
	name    string
	args    string // what follows the flags in the synopsis: "NAME"
	summary string // one line, for the list of commands
	about   string // the description, before the flags
	example string // one real transcript
	run     func(context.Context, *env, []string) error
	hidden  bool
}

// commands is every subcommand, in the order the usage lists them.
func commands() []subcommand {
	return []subcommand{
		{name: "serve", summary: "run the registry, its DNS server and the hosted services", about: serveAbout, example: serveExample, run: runServe},
		{name: "stop", summary: "stop the annuaire that runs on a data directory", about: stopAbout, example: stopExample, run: runStop},
		{name: "lookup", args: "NAME", summary: "show the chain from a name to its address:port", about: lookupAbout, example: lookupExample, run: runLookup},
		{name: "dial", args: "NAME", summary: "connect to a service by name and relay stdin and stdout, like nc", about: dialAbout, example: dialExample, run: runDial},
		{name: "register", args: "NAME [PORT]", summary: "add a service instance through the HTTP API; prints its id", about: registerAbout, example: registerExample, run: runRegister},
		{name: "deregister", args: "ID|NAME", summary: "remove an instance by id, or a service's instances by name", about: deregisterAbout, example: deregisterExample, run: runDeregister},
		{name: "list", summary: "list the registered services: name, host, address, port, health", about: listAbout, example: listExample, run: runList},
		{name: "token", args: "add NAME | list | revoke NAME", summary: "add, list and revoke the students' tokens: each writes its own services only", about: tokenAbout, example: tokenExample, run: runToken},
		{name: "export", args: "[ZONE...]", summary: "print zones as master files (RFC 1035), from a data directory or by AXFR", about: exportAbout, example: exportExample, run: runExport},
		{name: "repair", summary: "accept the loss of a damaged journal: keep every intact record, set the damage aside", about: repairAbout, example: repairExample, run: runRepair},
		{name: "help", args: "[COMMAND]", summary: "show a command's help page", about: helpAbout, example: helpExample, run: runHelp},
		{name: "version", summary: "print the version, its revision and the Go that built it", about: versionAbout, example: versionExample, run: runVersion},
		{name: "completion", args: "bash|zsh|fish", summary: "print the shell's completion script for annuaire", about: completionAbout, example: completionExample, run: runCompletion},
		// process mode's exécutant, re-executed by the echo server
		{name: "echo-child", hidden: true, run: func(ctx context.Context, _ *env, args []string) error { return echo.RunChild(ctx, args) }},
	}
}

func findCommand(name string) (subcommand, bool) {
	for _, c := range commands() {
		if c.name == name {
			return c, true
		}
	}
	return subcommand{}, false
}

// Run runs the subcommand named by args[0].
func Run(ctx context.Context, e *env, args []string) error {
	if len(args) == 0 {
		io.WriteString(e.stderr, usage())
		return usageError{err: errors.New("no command given")}
	}
	switch args[0] {
	case "-h", "-help", "--help":
		io.WriteString(e.stdout, usage())
		return nil
	case "-version", "--version":
		return runVersion(ctx, e, args[1:])
	}
	c, ok := findCommand(args[0])
	if !ok {
		return usageError{err: fmt.Errorf("unknown command %q", args[0])}
	}
	err := c.run(ctx, e, args[1:])
	if u, ok := errors.AsType[usageError](err); ok && u.cmd == "" {
		u.cmd = c.name
		return u
	}
	return err
}

// usage is the list of commands, for "annuaire --help".
func usage() string {
	var b strings.Builder
	b.WriteString("annuaire: a service directory that answers by DNS — name → address → port.\n\n")
	b.WriteString("Usage: annuaire COMMAND [flags] [arguments]\n\nCommands:\n")
	for _, c := range commands() {
		if !c.hidden {
			fmt.Fprintf(&b, "  %-11s%s\n", c.name, c.summary)
		}
	}
	b.WriteString("\nFlags go before or after the arguments. \"annuaire help COMMAND\" or\n" +
		"\"annuaire COMMAND --help\" shows a command's page; \"annuaire --version\" the version.\n")
	return b.String()
}

const helpAbout = `Prints the help page of COMMAND, as "annuaire COMMAND --help" does, or
without COMMAND the list of commands.
`

const helpExample = `
$ annuaire help stop
annuaire stop — stop the annuaire that runs on a data directory
...
`

func runHelp(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "help")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	switch fs.NArg() {
	case 0:
		io.WriteString(e.stdout, usage())
		return nil
	case 1:
		c, ok := findCommand(fs.Arg(0))
		if !ok || c.hidden {
			return usageError{err: fmt.Errorf("no command %q", fs.Arg(0))}
		}
		return c.run(ctx, e, []string{"--help"})
	}
	return usageError{err: fmt.Errorf("want at most one COMMAND, got %d arguments", fs.NArg())}
}

func exitCode(e *env, err error) int {
	switch u, isUsage := errors.AsType[usageError](err); {
	case err == nil, errors.Is(err, flag.ErrHelp):
		return 0
	case isUsage && u.cmd != "":
		fmt.Fprintf(e.stderr, "annuaire %s: %v\ntry 'annuaire %s --help'\n", u.cmd, err, u.cmd)
		return 2
	case isUsage:
		fmt.Fprintf(e.stderr, "annuaire: %v\ntry 'annuaire --help'\n", err)
		return 2
	default:
		// errors.Join's lines (every address serve could not bind) each
		// stand alone.
		for line := range strings.Lines(err.Error()) {
			fmt.Fprint(e.stderr, "annuaire: ", line)
		}
		fmt.Fprintln(e.stderr)
		return 1
	}
}
