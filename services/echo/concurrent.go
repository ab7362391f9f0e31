package echo

import (
	"net"
	"time"
)

// serveConcurrent is the course's "serveur concurrent" with a goroutine
// where the course forks a process: the accept loop (the "veilleur") starts
// one goroutine per connection (the "exécutant") and goes straight back to
// accept, so clients are served at the same time.
//
//	t=socket(); t.bind(); t.listen()   → Listen (listen.go)
//	loop:
//	    s=t.accept()
//	    go: s.recv(); s.send() ...; s.close()
//
// A goroutine shares the server's descriptors, so there is nothing to close
// on either side, unlike after fork (compare process.go). At MaxConns
// connections the loop stops calling accept until one ends: new clients
// wait in the listen queue rather than being refused.
func (s *Server) serveConcurrent(t net.Listener) error {
	slots := make(chan struct{}, s.maxConns())
	drain := s.drain.Started()
	var delay time.Duration
	for {
		select {
		case slots <- struct{}{}:
		case <-drain:
			return net.ErrClosed
		}
		c, err := t.Accept() // s=t.accept()
		if err != nil {
			<-slots
			if acceptBackoff(err, &delay) {
				continue
			}
			return err
		}
		delay = 0
		s.accepted.Add(1)
		done, ok := s.track(c)
		if !ok {
			<-slots
			continue // stopping: the next turn sees the drain
		}
		go func() { // the exécutant
			defer func() { <-slots }()
			s.serveConn(c, done)
		}()
	}
}
