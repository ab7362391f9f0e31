package main

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"io"
	"strings"
)

const completionAbout = `Prints a script that teaches the shell annuaire's commands, their flags
and the values some flags take (--data completes directories, --proto
tcp or udp, --echo-mode the echo server's designs). The script is made
from the commands' own flags, so it is always this binary's.

  bash   source <(annuaire completion bash), or for every shell:
         annuaire completion bash > ~/.local/share/bash-completion/completions/annuaire
  zsh    source <(annuaire completion zsh) after compinit, or for every shell:
         annuaire completion zsh > "${fpath[1]}/_annuaire"
  fish   annuaire completion fish | source, or for every shell:
         annuaire completion fish > ~/.config/fish/completions/annuaire.fish
`

const completionExample = `
$ source <(annuaire completion bash)
$ annuaire lookup --<TAB>
--help    --json    --server  --zone
`

func runCompletion(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "completion")
	if err := parseFlags(e, fs, args); err != nil {
		return err
	}
	if fs.NArg() != 1 {
		return usageError{err: fmt.Errorf("want one shell: bash, zsh or fish; got %d arguments", fs.NArg())}
	}
	var write func(io.Writer, []completionCommand)
	switch fs.Arg(0) {
	case "bash":
		write = writeBash
	case "zsh":
		write = writeZsh
	case "fish":
		write = writeFish
	default:
		return usageError{err: fmt.Errorf("no completion for %q: want bash, zsh or fish", fs.Arg(0))}
	}
	cmds, err := completionCommands(ctx, e)
	if err != nil {
		return err
	}
	write(e.stdout, cmds)
	return nil
}

// completionCommand is what a shell needs to complete one command.
type completionCommand struct {
	name, summary string
	args          string   // "" if it takes no arguments
	argChoices    []string // the values of its one argument, if a closed set
	flags         []completionFlag
}

type completionFlag struct {
	name, about string
	value       string   // the placeholder, "" for a flag without value
	dir         bool     // the value is a directory
	choices     []string // the values, if a closed set
}

// completionCommands reads every visible command's flags from its own
// flag set (env.inspect), so that the scripts cannot drift from them.
func completionCommands(ctx context.Context, e *env) ([]completionCommand, error) {
	var out, names []completionCommand
	for _, c := range commands() {
		if c.hidden {
			continue
		}
		var fs *flag.FlagSet
		inspect := *e
		inspect.inspect = func(f *flag.FlagSet) { fs = f }
		if err := c.run(ctx, &inspect, nil); !errors.Is(err, errInspected) || fs == nil {
			return nil, fmt.Errorf("completion: %s did not show its flags: %v", c.name, err)
		}
		cc := completionCommand{name: c.name, summary: c.summary, args: c.args}
		fs.VisitAll(func(f *flag.Flag) { cc.flags = append(cc.flags, newCompletionFlag(f)) })
		cc.flags = append(cc.flags, completionFlag{name: "help", about: "show this command's help page"})
		out = append(out, cc)
		names = append(names, cc)
	}
	for i := range out {
		switch out[i].name {
		case "help":
			for _, c := range names {
				out[i].argChoices = append(out[i].argChoices, c.name)
			}
		case "completion":
			out[i].argChoices = []string{"bash", "zsh", "fish"}
		}
	}
	return out, nil
}

func newCompletionFlag(f *flag.Flag) completionFlag {
	value, usage := flag.UnquoteUsage(f)
	cf := completionFlag{name: f.Name, about: shortUsage(usage), value: value}
	if b, ok := f.Value.(interface{ IsBoolFlag() bool }); ok && b.IsBoolFlag() {
		cf.value = ""
	}
	if c, ok := f.Value.(*choiceFlag); ok {
		cf.choices = c.choices
	}
	cf.dir = value == "directory"
	return cf
}

// shortUsage is a flag's usage up to its first parenthesis or semicolon,
// to stand beside the flag in a completion menu.
func shortUsage(s string) string {
	if i := strings.IndexAny(s, "(;"); i > 0 {
		s = s[:i]
	}
	return strings.TrimSpace(s)
}

func commandNames(cmds []completionCommand) string {
	names := make([]string, len(cmds))
	for i, c := range cmds {
		names[i] = c.name
	}
	return strings.Join(names, " ")
}

// writeBash writes a completion function for bash's complete -F. A flag's
// value is completed after the flag ("--data DIR", and "--data=DIR", which
// bash splits at "="); flags are offered after "-", or at once for a
// command that takes no arguments.
func writeBash(w io.Writer, cmds []completionCommand) {
	var b strings.Builder
	b.WriteString(`# bash completion for annuaire, written by "annuaire completion bash".
# In this shell:   source <(annuaire completion bash)
# In every shell:  annuaire completion bash > ~/.local/share/bash-completion/completions/annuaire
_annuaire() {
	local cur=${COMP_WORDS[COMP_CWORD]} prev=${COMP_WORDS[COMP_CWORD-1]}
	if [[ $cur == = ]]; then
		cur=
	elif [[ $prev == = ]] && ((COMP_CWORD > 2)); then
		prev=${COMP_WORDS[COMP_CWORD-2]}
	fi
	COMPREPLY=()
	if ((COMP_CWORD == 1)); then
		mapfile -t COMPREPLY < <(compgen -W '`)
	b.WriteString(commandNames(cmds) + ` --help --version' -- "$cur")
		return
	fi
	local flags takes_args=
	case ${COMP_WORDS[1]} in
`)
	for _, c := range cmds {
		fmt.Fprintf(&b, "\t%s)\n", c.name)
		var values, flags []string
		fmt.Fprintf(&b, "\t\tcase $prev in\n")
		for _, f := range c.flags {
			flags = append(flags, "--"+f.name)
			switch {
			case f.value == "":
			case f.dir:
				fmt.Fprintf(&b, "\t\t--%[1]s | -%[1]s)\n\t\t\tcompopt -o filenames 2>/dev/null\n\t\t\tmapfile -t COMPREPLY < <(compgen -d -- \"$cur\")\n\t\t\treturn ;;\n", f.name)
			case f.choices != nil:
				fmt.Fprintf(&b, "\t\t--%[1]s | -%[1]s)\n\t\t\tmapfile -t COMPREPLY < <(compgen -W '%[2]s' -- \"$cur\")\n\t\t\treturn ;;\n", f.name, strings.Join(f.choices, " "))
			default:
				values = append(values, "--"+f.name, "-"+f.name)
			}
		}
		if len(values) > 0 {
			fmt.Fprintf(&b, "\t\t%s)\n\t\t\treturn ;; # a value to type\n", strings.Join(values, " | "))
		}
		b.WriteString("\t\tesac\n")
		if c.argChoices != nil {
			fmt.Fprintf(&b, "\t\tif ((COMP_CWORD == 2)) && [[ $cur != -* ]]; then\n\t\t\tmapfile -t COMPREPLY < <(compgen -W '%s' -- \"$cur\")\n\t\t\treturn\n\t\tfi\n", strings.Join(c.argChoices, " "))
		}
		fmt.Fprintf(&b, "\t\tflags='%s'", strings.Join(flags, " "))
		if c.args != "" {
			b.WriteString("\n\t\ttakes_args=1")
		}
		b.WriteString(" ;;\n")
	}
	b.WriteString(`	*)
		return ;;
	esac
	if [[ $cur == -* || -z $takes_args ]]; then
		mapfile -t COMPREPLY < <(compgen -W "$flags" -- "$cur")
	fi
}
complete -F _annuaire annuaire
`)
	io.WriteString(w, b.String())
}

// writeZsh writes a completion function for zsh's compsys, with each
// command's and flag's description.
func writeZsh(w io.Writer, cmds []completionCommand) {
	var b strings.Builder
	b.WriteString(`#compdef annuaire
# zsh completion for annuaire, written by "annuaire completion zsh".
# In this shell, after compinit:  source <(annuaire completion zsh)
# In every shell:  annuaire completion zsh > "${fpath[1]}/_annuaire"
_annuaire() {
	local -a commands
	commands=(
`)
	for _, c := range cmds {
		fmt.Fprintf(&b, "\t\t%s\n", zshQuote(c.name+":"+c.summary))
	}
	b.WriteString(`	)
	if ((CURRENT == 2)); then
		_describe -t commands 'annuaire command' commands
		return
	fi
	local cmd=${words[2]}
	shift words
	((CURRENT--))
	case $cmd in
`)
	for _, c := range cmds {
		fmt.Fprintf(&b, "\t%s)\n\t\t_arguments -S", c.name)
		for _, f := range c.flags {
			about := zshEscape(f.about, "[]:\\")
			var spec string
			switch {
			case f.value == "":
				spec = fmt.Sprintf("--%s[%s]", f.name, about)
			case f.dir:
				spec = fmt.Sprintf("--%s=[%s]:%s:_files -/", f.name, about, zshEscape(f.value, ":\\"))
			case f.choices != nil:
				spec = fmt.Sprintf("--%s=[%s]:%s:(%s)", f.name, about, zshEscape(f.value, ":\\"), strings.Join(f.choices, " "))
			default:
				spec = fmt.Sprintf("--%s=[%s]:%s: ", f.name, about, zshEscape(f.value, ":\\"))
			}
			fmt.Fprintf(&b, " \\\n\t\t\t%s", zshQuote(spec))
		}
		switch {
		case c.argChoices != nil:
			fmt.Fprintf(&b, " \\\n\t\t\t%s", zshQuote(fmt.Sprintf(":%s:(%s)", zshEscape(c.args, ":\\"), strings.Join(c.argChoices, " "))))
		case c.args != "":
			fmt.Fprintf(&b, " \\\n\t\t\t%s", zshQuote(fmt.Sprintf("*:%s: ", zshEscape(c.args, ":\\"))))
		}
		b.WriteString(" ;;\n")
	}
	b.WriteString(`	esac
}
if [[ $funcstack[1] == _annuaire ]]; then
	_annuaire "$@"
else
	compdef _annuaire annuaire
fi
`)
	io.WriteString(w, b.String())
}

// zshEscape puts a backslash before each of chars in s.
func zshEscape(s, chars string) string {
	var b strings.Builder
	for _, r := range s {
		if strings.ContainsRune(chars, r) {
			b.WriteByte('\\')
		}
		b.WriteRune(r)
	}
	return b.String()
}

// zshQuote quotes s for the shell, in single quotes.
func zshQuote(s string) string {
	return "'" + strings.ReplaceAll(s, "'", `'\''`) + "'"
}

// writeFish writes fish complete commands, with descriptions.
func writeFish(w io.Writer, cmds []completionCommand) {
	var b strings.Builder
	b.WriteString(`# fish completion for annuaire, written by "annuaire completion fish".
# In this shell:   annuaire completion fish | source
# In every shell:  annuaire completion fish > ~/.config/fish/completions/annuaire.fish
complete -c annuaire -f
complete -c annuaire -n __fish_use_subcommand -l help -d 'show the list of commands'
complete -c annuaire -n __fish_use_subcommand -l version -d 'print the version'
`)
	for _, c := range cmds {
		fmt.Fprintf(&b, "complete -c annuaire -n __fish_use_subcommand -a %s -d %s\n", c.name, zshQuote(c.summary))
	}
	for _, c := range cmds {
		cond := zshQuote("__fish_seen_subcommand_from " + c.name)
		for _, f := range c.flags {
			fmt.Fprintf(&b, "complete -c annuaire -n %s -l %s", cond, f.name)
			switch {
			case f.value == "":
			case f.dir:
				b.WriteString(" -x -a '(__fish_complete_directories)'")
			case f.choices != nil:
				fmt.Fprintf(&b, " -x -a %s", zshQuote(strings.Join(f.choices, " ")))
			default:
				b.WriteString(" -x")
			}
			fmt.Fprintf(&b, " -d %s\n", zshQuote(f.about))
		}
		if c.argChoices != nil {
			fmt.Fprintf(&b, "complete -c annuaire -n %s -a %s\n", cond, zshQuote(strings.Join(c.argChoices, " ")))
		}
	}
	io.WriteString(w, b.String())
}
