//go:build darwin || dragonfly || freebsd || linux || netbsd || openbsd

package main

import (
	"context"
	"errors"
	"fmt"
	"net"
	"os"
	"runtime"
	"sync"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// selectRelay is `dial --select`: the course's last slide on the client
// side, one loop in one thread waiting in select(2) on the keyboard and the
// socket at once, with no goroutine per direction:
//
//	liste_lectures = [clisock, sys.stdin]
//	readers, writers, errors = select.select(liste_lectures, liste_ecritures, [], delai)
//	for input in readers:
//	    if input == clisock: msg = clisock.recv(1000)       # ne bloque pas
//	    if input == sys.stdin: msg = sys.stdin.readline()   # ne bloque pas
//
// A relay needs two things the slide leaves out. What one side gives must
// reach the other: the socket is non-blocking, so a send may take only
// part of it; the rest waits, and the socket goes in the write list
// (liste_ecritures, empty on the slide) until it can take more. And a side
// is read again only once what it gave has gone, so a server that stops
// reading slows the reading of stdin instead of growing memory, and the
// screen that stops taking output slows the reading of the socket.
type selectRelay struct {
	in, out int // the process's stdin and stdout
}

func newSelectRelay(e *env) (*selectRelay, error) {
	in, inOK := e.stdin.(*os.File)
	out, outOK := e.stdout.(*os.File)
	if !inOK || !outOK {
		return nil, errors.New("--select waits in select(2) on the process's own stdin, which is not a file descriptor here")
	}
	// Fd puts the files in blocking mode: select says when a read will
	// not wait.
	return &selectRelay{in: int(in.Fd()), out: int(out.Fd())}, nil
}

// side is one direction of the relay.
type side struct {
	buf        []byte
	start, end int  // buf[start:end] was read and is not written yet
	eof        bool // the reader gave its end of file
}

func (s *side) pending() bool { return s.start < s.end }

// run relays between conn and stdin/stdout until the server closes its
// side (or ctx ends), and returns what went each way.
func (r *selectRelay) run(ctx context.Context, conn net.Conn, tr *dialTrace) (sent, received int64, err error) {
	// One thread, as the course's one process: the loop's system calls
	// are all made by the thread that waits in select.
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()

	s, err := ownFD(conn) // clisock
	if err != nil {
		return 0, 0, err
	}
	// select(2)'s sets are bitmaps of FD_SETSIZE bits; a descriptor past
	// them would be written outside the set.
	if top := max(s, r.in, r.out); top >= unix.FD_SETSIZE {
		unix.Close(s)
		return 0, 0, fmt.Errorf("--select: descriptor %d does not fit select(2)'s FD_SETSIZE (%d); dial without --select", top, unix.FD_SETSIZE)
	}
	// Ctrl-C: shutting the socket down wakes select, which finds it
	// readable at its end of file.
	var mu sync.Mutex // guards closed, so that the shutdown never hits a reused descriptor
	closed := false
	stop := context.AfterFunc(ctx, func() {
		mu.Lock()
		defer mu.Unlock()
		if !closed {
			unix.Shutdown(s, unix.SHUT_RDWR)
		}
	})
	defer func() {
		stop()
		mu.Lock()
		closed = true
		unix.Close(s) // clisock.close()
		mu.Unlock()
	}()

	up := &side{buf: make([]byte, 32<<10)}   // stdin → socket
	down := &side{buf: make([]byte, 32<<10)} // socket → stdout
	upShut := false
	quiet := tr != nil // --trace says once when the server has said nothing yet
	for !down.eof || down.pending() {
		var readers, writers unix.FdSet
		if !up.eof && !up.pending() {
			readers.Set(r.in) // sys.stdin
		}
		if !down.eof && !down.pending() {
			readers.Set(s) // clisock
		}
		if up.pending() {
			writers.Set(s)
		}
		if down.pending() {
			writers.Set(r.out)
		}
		// delai: none, unless --trace is to say that the server is quiet.
		var delai *unix.Timeval
		if quiet {
			left := max(quietAfter-time.Since(tr.start), time.Millisecond)
			tv := unix.NsecToTimeval(left.Nanoseconds())
			delai = &tv
		}
		n, err := unix.Select(max(s, r.in, r.out)+1, &readers, &writers, nil, delai)
		if errors.Is(err, unix.EINTR) {
			continue
		}
		if err != nil {
			return sent, received, os.NewSyscallError("select", err)
		}
		if n == 0 {
			tr.waiting(sent)
			quiet = false
			continue
		}

		if readers.IsSet(s) { // msg = clisock.recv(...)
			n, _, err := unix.Recvfrom(s, down.buf, 0)
			switch {
			case n > 0:
				if tr != nil && received == 0 {
					tr.printf("first byte from %s after %v\n", tr.remote, time.Since(tr.start).Round(time.Microsecond))
				}
				quiet = false
				down.start, down.end = 0, n
				received += int64(n)
			case err == nil:
				down.eof = true // the server closed its side
			case !retry(err):
				return sent, received, fmt.Errorf("reading from %s: %w", conn.RemoteAddr(), os.NewSyscallError("recvfrom", err))
			}
		}
		if readers.IsSet(r.in) { // msg = sys.stdin.readline()
			n, err := unix.Read(r.in, up.buf)
			switch {
			case n > 0:
				up.start, up.end = 0, n
			case err == nil:
				up.eof = true
			case !retry(err):
				return sent, received, fmt.Errorf("reading stdin: %w", os.NewSyscallError("read", err))
			}
		}

		// Write what was read; whatever a side does not take now waits
		// for select to say it can.
		if up.pending() {
			n, err := unix.SendmsgN(s, up.buf[up.start:up.end], nil, nil, 0) // clisock.send(msg)
			if n > 0 {
				up.start += n
				sent += int64(n)
			}
			if err != nil && !retry(err) {
				return sent, received, fmt.Errorf("writing to %s: %w", conn.RemoteAddr(), os.NewSyscallError("sendmsg", err))
			}
		}
		if down.pending() {
			n, err := unix.Write(r.out, down.buf[down.start:down.end])
			if n > 0 {
				down.start += n
			}
			if err != nil && !retry(err) {
				return sent, received, fmt.Errorf("writing stdout: %w", os.NewSyscallError("write", err))
			}
		}
		if up.eof && !up.pending() && !upShut {
			// The end of stdin is the end of what the server gets
			// (shutdown, not close): it sees its end of file and may
			// still answer.
			upShut = true
			if err := unix.Shutdown(s, unix.SHUT_WR); err != nil && !errors.Is(err, unix.ENOTCONN) {
				return sent, received, os.NewSyscallError("shutdown", err)
			}
		}
	}
	return sent, received, nil
}

// retry reports whether a call on a descriptor select reported ready may
// be made again: interrupted, or another reader took the bytes first.
func retry(err error) bool {
	return errors.Is(err, unix.EINTR) || errors.Is(err, unix.EAGAIN)
}

// ownFD takes conn's socket out of Go's runtime poller: it returns a
// descriptor of its own for the socket and closes conn, so that only the
// select loop waits on it.
func ownFD(conn net.Conn) (int, error) {
	sc, ok := conn.(syscall.Conn)
	if !ok {
		return -1, fmt.Errorf("--select needs a socket, not %T", conn)
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	fd, dupErr := -1, error(nil)
	if err := rc.Control(func(u uintptr) { fd, dupErr = unix.FcntlInt(u, unix.F_DUPFD_CLOEXEC, 0) }); err != nil {
		return -1, err
	}
	if dupErr != nil {
		return -1, os.NewSyscallError("dup", dupErr)
	}
	conn.Close() // the socket stays open through fd
	return fd, nil
}
