package main

import (
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
	"unicode/utf8"
)

// newFlagSet returns the flag set of command name. Its Usage prints the
// command's help page on stdout; errors are returned, never printed by
// the flag package (parseFlags).
func newFlagSet(e *env, name string) *flag.FlagSet {
	fs := flag.NewFlagSet(name, flag.ContinueOnError)
	fs.SetOutput(io.Discard)
	fs.Usage = func() { printHelp(e.stdout, name, fs) }
	return fs
}

// errInspected is what parseFlags returns, without parsing, to a caller
// that only wanted the flag set (env.inspect).
var errInspected = errors.New("flags inspected")

// parseFlags parses args with flags before, between or after the
// positional arguments, as the tools people know do ("lookup echo
// --json"); "--" ends the flags. fs.Args() then holds the positional
// arguments. --help prints the command's page on stdout and returns
// flag.ErrHelp (exit 0); a bad flag or value is a usageError of one line.
func parseFlags(e *env, fs *flag.FlagSet, args []string) error {
	if e.inspect != nil {
		e.inspect(fs)
		return errInspected
	}
	// The flag package calls Usage on every error too; only --help prints it.
	help := fs.Usage
	fs.Usage = func() {}
	defer func() { fs.Usage = help }()
	var pos []string
	for {
		if err := fs.Parse(args); err != nil {
			if errors.Is(err, flag.ErrHelp) {
				help()
				return err
			}
			return usageError{err: parseError(fs, err)}
		}
		rest := fs.Args()
		if len(rest) == 0 {
			break
		}
		if len(rest) < len(args) && args[len(args)-len(rest)-1] == "--" {
			pos = append(pos, rest...) // everything after "--" is an argument
			break
		}
		pos = append(pos, rest[0])
		args = rest[1:]
	}
	// Parse stopped at each argument in turn; parsing "--" and the
	// arguments sets what fs.Args() returns and no flag.
	return fs.Parse(append([]string{"--"}, pos...))
}

// parseError says the flag package's errors with the flag as people type
// it ("unknown flag --bogus" for "flag provided but not defined: -bogus"),
// and what a value should look like where the package only says "parse
// error".
func parseError(fs *flag.FlagSet, err error) error {
	msg := err.Error()
	if name, ok := strings.CutPrefix(msg, "flag provided but not defined: -"); ok {
		return fmt.Errorf("unknown flag --%s", name)
	}
	if name, ok := strings.CutPrefix(msg, "flag needs an argument: -"); ok {
		return fmt.Errorf("--%s needs a value", name)
	}
	// invalid value "x" for flag -proto: want tcp or udp
	// invalid boolean value "x" for -json: parse error
	rest, ok := strings.CutPrefix(msg, "invalid ")
	if !ok {
		return err
	}
	what, after, ok := strings.Cut(rest, " for flag -")
	if !ok {
		if what, after, ok = strings.Cut(rest, " for -"); !ok {
			return err
		}
	}
	name, why, _ := strings.Cut(after, ": ")
	if why == "parse error" {
		if f := fs.Lookup(name); f != nil {
			switch kind, _ := flag.UnquoteUsage(f); kind {
			case "duration":
				why = "want a duration such as 15s or 500ms"
			case "int", "uint":
				why = "want a whole number"
			case "":
				why = "want true or false"
			}
		}
	}
	return fmt.Errorf("--%s: %s: %s", name, what, why)
}

// choiceFlag is a string flag with a closed set of values: another value
// is refused in one line, and shell completion offers the set.
type choiceFlag struct {
	value   string
	choices []string
}

// choice defines a choiceFlag.
func choice(fs *flag.FlagSet, name, value, usage string, choices ...string) *string {
	c := &choiceFlag{value: value, choices: choices}
	fs.Var(c, name, usage)
	return &c.value
}

func (c *choiceFlag) String() string { return c.value }

func (c *choiceFlag) Set(s string) error {
	for _, v := range c.choices {
		if s == v {
			c.value = s
			return nil
		}
	}
	return fmt.Errorf("want %s", orList(c.choices))
}

// orList is "a, b or c".
func orList(s []string) string {
	if len(s) < 2 {
		return strings.Join(s, "")
	}
	return strings.Join(s[:len(s)-1], ", ") + " or " + s[len(s)-1]
}

// printHelp prints command name's help page, in the order of a manual
// page: what it does, its synopsis, the description, the flags, an
// example.
func printHelp(w io.Writer, name string, fs *flag.FlagSet) {
	c, _ := findCommand(name)
	var b strings.Builder
	fmt.Fprintf(&b, "annuaire %s — %s\n\n", c.name, c.summary)
	b.WriteString("Usage: annuaire " + c.name)
	hasFlags := false
	fs.VisitAll(func(*flag.Flag) { hasFlags = true })
	if hasFlags {
		b.WriteString(" [flags]")
	}
	if c.args != "" {
		b.WriteString(" " + c.args)
	}
	b.WriteString("\n")
	if c.about != "" {
		b.WriteString("\n" + strings.TrimLeft(c.about, "\n"))
	}
	if hasFlags {
		b.WriteString("\nFlags:\n")
		fs.VisitAll(func(f *flag.Flag) { writeFlag(&b, f) })
	}
	if c.example != "" {
		b.WriteString("\nExample:\n")
		for line := range strings.Lines(strings.TrimLeft(c.example, "\n")) {
			b.WriteString("  " + line)
		}
	}
	io.WriteString(w, b.String())
}

// writeFlag writes one flag as "--name VALUE", then its usage and default
// wrapped under it.
func writeFlag(b *strings.Builder, f *flag.Flag) {
	value, usage := flag.UnquoteUsage(f)
	value = strings.ToUpper(value) // --data DIRECTORY, as a manual page writes it
	if _, isBool := f.Value.(interface{ IsBoolFlag() bool }); isBool {
		value = ""
	}
	if c, ok := f.Value.(*choiceFlag); ok {
		value = strings.Join(c.choices, "|")
	}
	b.WriteString("  --" + f.Name)
	if value != "" {
		b.WriteString(" " + value)
	}
	b.WriteString("\n")
	if d := f.DefValue; d != "" && d != "false" && d != "0" && d != "0s" {
		if strings.ContainsAny(d, " \t") {
			d = fmt.Sprintf("%q", d)
		}
		usage += " (default " + d + ")"
	}
	wrap(b, usage, "      ", 80)
}

// wrap writes text in lines of at most width columns, each indented.
func wrap(b *strings.Builder, text, indent string, width int) {
	line := indent
	for _, word := range strings.Fields(text) {
		if len(line) > len(indent) && utf8.RuneCountInString(line)+1+utf8.RuneCountInString(word) > width {
			b.WriteString(line + "\n")
			line = indent
		}
		if len(line) > len(indent) {
			line += " "
		}
		line += word
	}
	b.WriteString(line + "\n")
}
