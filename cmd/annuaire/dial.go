package main

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"sync/atomic"
	"time"
)

// runDial connects to a service by name and relays, like nc: stdin to the
// connection, the connection to stdout. At the end of stdin it half-closes
// the connection (the server sees EOF and can still answer); it returns
// when both directions are done.
//
//	$ printf 'bonjour\n' | annuaire dial echo
//	bonjour
func runDial(ctx context.Context, e *env, args []string) error {
	fs := newFlagSet(e, "dial", "[--server HOST:PORT] [--zone ZONE] [--trace] NAME")
	r := resolverFlags(e, fs)
	trace := fs.Bool("trace", false, "print the chain, the local and remote address:port and timings to stderr")
	if err := parseFlags(fs, args); err != nil {
		return err
	}
	name, err := nameArg(fs)
	if err != nil {
		return err
	}

	start := time.Now()
	c, err := r.Lookup(ctx, name)
	if err != nil {
		if *trace {
			fmt.Fprint(e.stderr, c.Text())
		}
		return err
	}
	looked := time.Now()
	conn, err := r.DialChain(ctx, "tcp", c)
	if *trace {
		fmt.Fprint(e.stderr, c.Text())
	}
	if err != nil {
		return err
	}
	defer conn.Close()
	if *trace {
		fmt.Fprintf(e.stderr, "connected: local %s → remote %s (lookup %v, connect %v)\n",
			conn.LocalAddr(), conn.RemoteAddr(), looked.Sub(start).Round(time.Microsecond), time.Since(looked).Round(time.Microsecond))
	}

	// Closing the connection when ctx ends unblocks both copies.
	stop := context.AfterFunc(ctx, func() { conn.Close() })
	defer stop()

	var sent, received atomic.Int64
	upDone := make(chan error, 1)
	go func() {
		n, err := io.Copy(conn, e.stdin)
		sent.Store(n)
		if cw, ok := conn.(interface{ CloseWrite() error }); ok && err == nil {
			err = cw.CloseWrite() // EOF for the server, which may still answer
		}
		upDone <- err
	}()
	n, downErr := io.Copy(e.stdout, conn)
	received.Store(n)
	// The server has closed its side. If stdin is still open nothing can
	// be read back any more, so only wait for it while it is moving.
	var upErr error
	select {
	case upErr = <-upDone:
	case <-ctx.Done():
	}
	if *trace {
		fmt.Fprintf(e.stderr, "closed after %v: sent %d bytes, received %d bytes\n",
			time.Since(start).Round(time.Microsecond), sent.Load(), received.Load())
	}
	if ctx.Err() != nil {
		return nil // interrupted by the user: not a failure
	}
	if downErr != nil {
		return fmt.Errorf("dial %s: reading from %s: %w", name, conn.RemoteAddr(), downErr)
	}
	if upErr != nil && !errors.Is(upErr, net.ErrClosed) {
		return fmt.Errorf("dial %s: writing to %s: %w", name, conn.RemoteAddr(), upErr)
	}
	return nil
}
