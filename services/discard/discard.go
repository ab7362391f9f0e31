// Package discard is the discard service of RFC 863: whatever a client
// sends, over TCP or UDP, is thrown away and nothing is sent back — "a
// useful debugging and measurement tool". It is one of the small services
// inetd serves itself, there for a person with nc to see a server that
// only listens.
//
// Handle is the protocol over TCP; a netserver.Server serves it, and a
// netserver.PacketServer without a Reply is discard over UDP, as
// annuaire's discard row does.
package discard

import (
	"time"

	"github.com/annuaire/annuaire/services/netserver"
)

// IdleTimeout closes a connection that sends nothing for that long.
const IdleTimeout = 5 * time.Minute

// Handle reads and throws away what a TCP client sends until it closes
// the connection ("This continues until the calling user terminates the
// connection"), goes idle for IdleTimeout, or the server shuts down, as a
// netserver.Server's Handle.
func Handle(c *netserver.Conn) {
	buf := make([]byte, 32<<10)
	for {
		if !c.StartIdle(IdleTimeout) {
			return
		}
		_, err := c.Read(buf)
		if !c.EndIdle() || err != nil {
			return
		}
	}
}
