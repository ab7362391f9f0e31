package echo

import (
	"net"
	"time"
)

// serveIterative is the course's "serveur itératif": one client is served at
// a time, from its accept to its close, before the next accept.
//
//	t=socket(); t.bind(); t.listen()   → Listen (listen.go)
//	loop:
//	    s=t.accept()                   → t.Accept()
//	    s.recv(); s.send() ...         → echoConn, until the client leaves
//	    s.close()
//
// While one client is served, the next ones wait in the listen queue: the
// kernel completes their handshake, so their connect returns and they may
// send, but nothing reads their bytes until their turn comes. When the
// queue is full (listen's backlog, plus one on Linux), Linux drops the new
// SYNs and the client retries them after 1 s, 3 s, ... — its connect
// stalls. That is the course's "elle est rejetée (pourra être refaite plus
// tard)".
func (s *Server) serveIterative(t net.Listener) error {
	var delay time.Duration
	for {
		c, err := t.Accept() // s=t.accept(): blocks until a client is queued
		if err != nil {
			if acceptBackoff(err, &delay) {
				continue
			}
			return err
		}
		delay = 0
		s.accepted.Add(1)
		if done, ok := s.track(c); ok {
			s.serveConn(c, done) // the interaction loop, then s.close()
		}
	}
}

// track registers an accepted connection with the drain, which cuts its
// reads short at a stop and closes it when the stop is forced; false means
// the server is stopping, and c is closed.
func (s *Server) track(c net.Conn) (done func(), ok bool) {
	done, ok = s.drain.Add(func() { c.SetReadDeadline(aLongTimeAgo) }, func() { c.Close() })
	if !ok {
		c.Close()
	}
	return done, ok
}

// serveConn echoes on one tracked connection in this process and closes
// it: the body of the iterative loop and of each concurrent goroutine.
func (s *Server) serveConn(c net.Conn, done func()) {
	defer done()
	defer c.Close() // s.close()
	s.active.Add(1)
	defer s.active.Add(-1)
	s.logger().Debug("echo: connection", "mode", s.Mode, "remote", c.RemoteAddr())
	echoConn(c, s.idleTimeout(), s.drain.Stopping)
}
