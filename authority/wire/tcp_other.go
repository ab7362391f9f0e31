//go:build !linux || portable

package wire

// Elsewhere a TCP connection reads and writes through net.Conn
// (tcp_linux.go).

func (c *bufferedConn) rawTCP() {}

// tcpGate makes reads pause where they are raw system calls; here it
// does nothing.
type tcpGate struct{}

func (g *tcpGate) open()                 {}
func (g *tcpGate) close()                {}
func (g *tcpGate) leave(c *bufferedConn) {}

func (c *bufferedConn) read(p []byte) (int, error) { return c.Conn.Read(p) }

func (c *bufferedConn) write(p []byte) (int, error) { return c.Conn.Write(p) }
