//go:build unix

package echo

import (
	"context"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/exec"
	"sync/atomic"
	"time"
)

// processUnsupported is empty: process mode runs on every Unix system.
const processUnsupported = ""

// serveProcess is the course's "serveur concurrent" with processes: the
// parent, the "veilleur", only accepts; for each connection it starts a
// child, the "exécutant", which serves that client and exits.
//
//	veilleur:   t=socket(); t.bind(); t.listen()   → Listen (listen.go)
//	            loop: s=t.accept(); fork(); s.close()
//	exécutant:  t.close(); s.recv(); s.send() ...; s.close(); exit()
//
// Go cannot fork a running program (its other threads would not follow),
// so the veilleur re-executes its own binary — fork and exec in one step —
// and hands s down as an inherited descriptor: exec.Cmd.ExtraFiles makes it
// the child's descriptor 3. After the start the veilleur closes its copy of
// s, as in the diagram, so that the client sees the connection end when the
// exécutant closes it.
//
// The exécutant's t.close() is done for us: Go opens every descriptor
// close-on-exec and passes only what ExtraFiles lists, so the kernel closes
// t at exec and the child never holds the listener. (A C server that forks
// without exec must call close(t) itself, or a crashed parent would leave
// its children holding the port.)
//
// Each child is reaped by cmd.Wait in a goroutine (no zombies), and a child
// that crashes only loses its own client. At MaxChildren children the
// veilleur waits for one to exit before it accepts again.
func (s *Server) serveProcess(t net.Listener) error {
	slots := make(chan struct{}, s.maxChildren())
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
		if err := s.fork(c, slots); err != nil {
			<-slots
			s.logger().Warn("echo: cannot start a child for a connection", "remote", c.RemoteAddr(), "err", err)
		}
	}
}

// fork starts the exécutant for c, then closes the veilleur's copy of c.
func (s *Server) fork(c net.Conn, slots chan struct{}) error {
	defer c.Close() // s.close() in the veilleur
	fc, ok := c.(interface{ File() (*os.File, error) })
	if !ok {
		return fmt.Errorf("a %T has no descriptor to hand down", c)
	}
	f, err := fc.File() // a second descriptor for s, the one the child inherits
	if err != nil {
		return err
	}
	defer f.Close()

	cmd, err := s.childCommand()
	if err != nil {
		return err
	}
	cmd.Args = append(cmd.Args, "-idle", s.idleTimeout().String())
	cmd.ExtraFiles = []*os.File{f} // descriptor 3 in the child
	if cmd.Stderr == nil {
		cmd.Stderr = os.Stderr
	}

	// The child is tracked before it starts, so that a drain either finds
	// it or refuses it; one that starts between the two finds no process
	// yet, which the check after the start makes up for.
	var proc atomic.Pointer[os.Process]
	done, ok := s.drain.Add(func() {
		if p := proc.Load(); p != nil {
			p.Signal(os.Interrupt) // the child drains, as the server does
		}
	}, func() {
		if p := proc.Load(); p != nil {
			p.Kill()
		}
	})
	if !ok {
		return errors.New("server is stopping")
	}
	if err := cmd.Start(); err != nil { // fork()
		done()
		return err
	}
	proc.Store(cmd.Process)
	select {
	case <-s.drain.Forced():
		cmd.Process.Kill()
	default:
		if s.drain.Stopping() {
			cmd.Process.Signal(os.Interrupt)
		}
	}
	s.active.Add(1)
	s.logger().Debug("echo: child", "pid", cmd.Process.Pid, "remote", c.RemoteAddr())
	go s.reap(cmd, slots, done)
	return nil
}

// reap waits for a child to exit (waitpid: no zombie) and frees its slot.
func (s *Server) reap(cmd *exec.Cmd, slots chan struct{}, done func()) {
	defer done()
	err := cmd.Wait()
	s.active.Add(-1)
	<-slots
	if err != nil && !s.drain.Stopping() {
		s.logger().Warn("echo: child ended badly", "pid", cmd.Process.Pid, "err", err)
	}
}

func (s *Server) childCommand() (*exec.Cmd, error) {
	if s.ChildCommand != nil {
		return s.ChildCommand(), nil
	}
	exe, err := os.Executable()
	if err != nil {
		return nil, err
	}
	return exec.Command(exe, "echo-child"), nil
}

func (s *Server) maxChildren() int {
	if s.MaxChildren > 0 {
		return s.MaxChildren
	}
	return DefaultMaxChildren
}

// RunChild is the exécutant of process mode: it echoes on the connection it
// inherited as descriptor 3 until the client leaves, then returns. args are
// the flags the server appends ("-idle DURATION"). When ctx ends (the
// server's drain sends SIGINT), it stops reading and returns once what it
// has read is sent back.
func RunChild(ctx context.Context, args []string) error {
	fs := flag.NewFlagSet("echo-child", flag.ContinueOnError)
	idle := fs.Duration("idle", DefaultIdleTimeout, "close the connection after this long without traffic")
	if err := fs.Parse(args); err != nil {
		return err
	}
	f := os.NewFile(3, "echo connection")
	c, err := net.FileConn(f) // s, as the veilleur accepted it
	f.Close()
	if err != nil {
		return fmt.Errorf("echo-child: descriptor 3: %w", err)
	}
	defer c.Close() // s.close(); exit()
	var stopping atomic.Bool
	stop := context.AfterFunc(ctx, func() {
		stopping.Store(true)
		c.SetReadDeadline(time.Unix(1, 0))
	})
	defer stop()
	echoConn(c, *idle, stopping.Load)
	return nil
}
