package netserver

import (
	"context"
	"net"
	"sync"
	"time"
)

// aLongTimeAgo is a deadline in the past, which makes a blocked read return
// at once.
var aLongTimeAgo = time.Unix(1, 0)

// Conn is one accepted connection, as Handle gets it. A Conn built
// outside Serve with only its net.Conn set, as a test of a protocol may
// build one, never sees a shutdown and its Context is Background.
type Conn struct {
	net.Conn

	drain  *Drain
	ctx    context.Context
	cancel context.CancelFunc

	mu   sync.Mutex // guards idle and the read deadline while idle
	idle bool       // waiting for a request, so Shutdown may interrupt
}

// Context ends when Handle returns or when the stop is forced (Shutdown's
// context ended, or the drain after Serve's context ended took longer than
// DrainTimeout); it carries the values of Serve's context.
func (c *Conn) Context() context.Context {
	if c.ctx == nil {
		return context.Background()
	}
	return c.ctx
}

// StartIdle marks the connection as waiting for the client's next request
// and sets the read deadline timeout from now; it returns false, leaving
// the deadline alone, if the server is shutting down. While idle, Shutdown
// interrupts the read with a deadline in the past, so it returns a timeout
// error at once. Checking the flag and setting idle under mu pairs with
// wake: either Shutdown sees idle, or this sees the server closing.
func (c *Conn) StartIdle(timeout time.Duration) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.closing() {
		return false
	}
	c.idle = true
	c.SetReadDeadline(time.Now().Add(timeout))
	return true
}

// EndIdle marks a request as received; it returns false if the server is
// shutting down, in which case the request should not be run.
func (c *Conn) EndIdle() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	c.idle = false
	return !c.closing()
}

func (c *Conn) closing() bool { return c.drain != nil && c.drain.Stopping() }

// wake interrupts a connection that waits for a request; one in the
// middle of a request is left to finish it.
func (c *Conn) wake() {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.idle {
		c.SetReadDeadline(aLongTimeAgo)
	}
}
