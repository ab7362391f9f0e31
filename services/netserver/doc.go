// Package netserver is what the services annuaire hosts share to serve:
// the accept loop with a goroutine per TCP connection under a cap
// (Server), the datagram loop of the small UDP services with its guards
// against loops and reflection (PacketServer, Guard), and the graceful stop
// both use (Drain). The protocol spoken is the caller's: a Handle function
// per connection, a Reply function per datagram, as inetd runs its
// internal services.
//
// # The stop contract
//
// Every server annuaire hosts — these, echo in each of its designs, and
// the web server — keeps the same contract, which net/http's Server set:
//
//   - Serve(ctx, ln) (and ServePacket(ctx, pc)) serves until ctx ends or
//     Shutdown is called, and closes what it was given.
//   - After Shutdown, Serve returns ErrServerClosed, which is net/http's
//     http.ErrServerClosed itself, so one errors.Is holds for every server;
//     a Serve called after Shutdown returns it at once. As with net/http,
//     Serve may return before the connections are done: Shutdown's return
//     says they are.
//   - Shutdown(ctx) closes the listeners, wakes the connections waiting for
//     a request, lets the others finish what they are doing, and returns
//     nil once all are done — or, when ctx ends first, cuts them (closes
//     them, cancels their contexts) and returns ctx's error. It may be
//     called any number of times.
//   - When Serve's ctx ends, the server shuts down by itself and gives its
//     connections DrainTimeout (zero: DefaultDrainTimeout) to finish; Serve
//     then returns nil once they are done or cut.
//   - A nil Logger discards; a server never writes to slog.Default.
package netserver

import (
	"net/http"
	"time"
)

// ErrServerClosed is returned by Serve and ServePacket after Shutdown. It
// is net/http's, so that every hosted server, the web one included, ends
// with the same error.
var ErrServerClosed = http.ErrServerClosed

// DefaultDrainTimeout is how long connections get to finish once Serve's
// context ends, when DrainTimeout is zero.
const DefaultDrainTimeout = 5 * time.Second
