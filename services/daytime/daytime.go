// Package daytime is the daytime service of RFC 867: a client that
// connects over TCP, or sends any datagram over UDP, gets the date and time
// as one line of text; what it sends is thrown away. It is one of the
// small services inetd serves itself (with echo, discard, chargen and
// time), there for a person with nc to see a server answer.
//
// Handle and Reply are the protocol; a netserver.Server and a
// netserver.PacketServer serve them, as annuaire's daytime row does.
package daytime

import (
	"io"
	"time"

	"github.com/annuaire/annuaire/services/netserver"
)

// Format is the line's layout: RFC 867 sets no syntax and names "Weekday,
// Month Day, Year Time-Zone" as one popular one, "Tuesday, February 22,
// 1982 17:37:43-PST" (the time is the server's local time).
const Format = "Monday, January 2, 2006 15:04:05-MST"

// Line is the answer at t: t in Format, then CRLF.
func Line(t time.Time) []byte {
	return append(t.AppendFormat(nil, Format), '\r', '\n')
}

// Handle sends the date on a TCP connection, as a netserver.Server's
// Handle: "Once a connection is established the current date and time is
// sent out the connection as a ascii character string (and any data
// received is thrown away). The service closes the connection after
// sending the quote." It half-closes first and reads what the client sent
// until the client closes too (at most a few seconds): closing a socket
// with unread bytes in it resets the connection, which can destroy the
// date before the client has read it.
func Handle(c *netserver.Conn) {
	c.SetWriteDeadline(time.Now().Add(10 * time.Second))
	if _, err := c.Write(Line(time.Now())); err != nil {
		return
	}
	if hc, ok := c.Conn.(interface{ CloseWrite() error }); ok && hc.CloseWrite() == nil {
		if c.StartIdle(3 * time.Second) {
			io.Copy(io.Discard, io.LimitReader(c, 64<<10))
		}
	}
}

// Reply answers any datagram with the date, as a netserver.PacketServer's
// Reply: "When a datagram is received, an answering datagram is sent
// containing the current date and time as a ASCII character string (the
// data in the received datagram is ignored)."
func Reply([]byte) []byte { return Line(time.Now()) }
