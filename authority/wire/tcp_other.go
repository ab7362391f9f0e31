//go:build !linux || portable

package wire

// Elsewhere a TCP connection reads and writes through net.Conn
// (tcp_linux.go).

func (c *bufferedConn) rawTCP() {}

func (c *bufferedConn) read(p []byte) (int, error) { return c.Conn.Read(p) }

func (c *bufferedConn) write(p []byte) (int, error) { return c.Conn.Write(p) }
