// Package readme holds the README to what annuaire really prints: its test
// runs every shell transcript marked as real, command by command, against
// a fresh `annuaire serve`, and compares what each command prints with
// what the README shows. TestLabDocs does the same for the lab guides
// (docs/lab.fr.md, docs/lab.en.md, docs/lab-corrige.fr.md), each block in
// a directory that holds the lab's Python programs. For tests only; the
// package has no API.
//
// A transcript is real when the line before its fence is the marker
//
//	<!-- real -->
//	<!-- real serve="--echo 127.0.0.1:17007 --echo-mode iterative --backlog 1" -->
//	<!-- real env="SECRET=c2VjcmV0" serve="--tsig hmac-sha256:k:$SECRET" -->
//
// serve adds flags to the server the block runs against; env sets
// variables in the block's shell before the server starts, so that its
// flags and the block's commands may use them. Each block gets
// its own server, built from this tree, with a private state directory
// ($XDG_STATE_HOME, so that the commands' defaults find it) and every
// address flag on a port the system picks; the shell runs in a process
// namespace of its own where it can, so that pgrep finds that server and
// no other. In the block, a line "$ COMMAND" is typed into one bash
// session (a "\" at the end of the line, or an unfinished here-document,
// carries it on), and the lines up to the next "$ " are what it prints,
// stdout and stderr together as a terminal shows them. A line "..."
// stands for any number of lines. A command ending with "&" runs in the
// background and gets a second to print what it prints at once.
//
// The README shows the default ports (1053, 8080, 7007, ...), and the
// addresses the serve attribute gives; the test puts the chosen ports in
// the commands and the default ones back in what they print. Before the
// comparison both sides are normalised: process ids (and dig's message
// ids), ephemeral ports, durations, descriptor numbers (strace's too) and
// strace's timeouts, pointers, zone serials (ten digits from 1: annuaire
// starts them at the time), this machine's name (the README's is vm), the
// state directory and the binary's path, and runs of blanks. Everything
// else must match.
//
// The test logs each block's real output, ports put back, ready to paste
// into the README (shown on a mismatch, and with go test -v).
package readme
