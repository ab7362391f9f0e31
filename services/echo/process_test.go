//go:build unix

package echo

import (
	"bufio"
	"errors"
	"fmt"
	"net"
	"os"
	"path/filepath"
	"slices"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"
)

// The tests below find which process holds a socket the way ss -p does:
// the socket's inode from /proc/net/tcp, then the process whose
// /proc/PID/fd has a link to "socket:[inode]".

// procTCPAddr is an address as /proc/net/tcp prints it: the IPv4 address
// as a little-endian hexadecimal word, then the port.
func procTCPAddr(a net.Addr) string {
	ta := a.(*net.TCPAddr)
	ip := ta.IP.To4()
	return fmt.Sprintf("%02X%02X%02X%02X:%04X", ip[3], ip[2], ip[1], ip[0], ta.Port)
}

// socketInode returns the inode of the TCP socket bound to local and, for
// a connection, connected to remote (nil: the listening socket).
func socketInode(t *testing.T, local, remote net.Addr) string {
	t.Helper()
	f, err := os.Open("/proc/net/tcp")
	if err != nil {
		t.Skipf("no /proc/net/tcp: %v", err)
	}
	defer f.Close()
	wantRemote := "00000000:0000"
	if remote != nil {
		wantRemote = procTCPAddr(remote)
	}
	sc := bufio.NewScanner(f)
	for sc.Scan() {
		// sl local_address rem_address st tx:rx tr:when retrnsmt uid timeout inode
		fields := strings.Fields(sc.Text())
		if len(fields) > 9 && fields[1] == procTCPAddr(local) && fields[2] == wantRemote {
			return fields[9]
		}
	}
	t.Fatalf("no socket %v → %v in /proc/net/tcp", local, remote)
	return ""
}

// socketOwners lists the processes with a descriptor on the socket inode.
func socketOwners(inode string) []int {
	var pids []int
	dirs, _ := filepath.Glob("/proc/[0-9]*/fd")
	for _, dir := range dirs {
		fds, _ := os.ReadDir(dir)
		for _, fd := range fds {
			if link, _ := os.Readlink(filepath.Join(dir, fd.Name())); link == "socket:["+inode+"]" {
				pid, _ := strconv.Atoi(filepath.Base(filepath.Dir(dir)))
				pids = append(pids, pid)
				break
			}
		}
	}
	return pids
}

func parentOf(pid int) int {
	b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/stat", pid))
	// pid (comm) state ppid ...; comm may hold spaces, so cut after ')'.
	s := string(b)
	fields := strings.Fields(s[strings.LastIndexByte(s, ')')+1:])
	if len(fields) < 2 {
		return -1
	}
	ppid, _ := strconv.Atoi(fields[1])
	return ppid
}

// serverSideOwner waits until one process alone holds the server's end of
// c — the parent closes its copy just after the child starts — and
// returns it.
func serverSideOwner(t *testing.T, c net.Conn) int {
	t.Helper()
	inode := socketInode(t, c.RemoteAddr(), c.LocalAddr())
	var owners []int
	for deadline := time.Now().Add(3 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		if owners = socketOwners(inode); len(owners) == 1 {
			return owners[0]
		}
	}
	t.Fatalf("server end of %v held by %v, want a single process", c.LocalAddr(), owners)
	return 0
}

// TestProcessChildPerConnection checks the course's diagram: each client
// is served by its own exécutant, a child of the veilleur; the veilleur no
// longer holds s, and the exécutant never held t.
func TestProcessChildPerConnection(t *testing.T) {
	ts := start(t, "process", 0)
	listener := socketInode(t, ts.ln.Addr(), nil)
	var pids []int
	for i := range 3 {
		c := dial(t, ts.addr)
		roundTrip(t, c, fmt.Sprintf("client %d\n", i))
		pid := serverSideOwner(t, c)
		if pid == os.Getpid() {
			t.Fatalf("client %d is served by the veilleur itself", i)
		}
		if ppid := parentOf(pid); ppid != os.Getpid() {
			t.Errorf("client %d is served by pid %d whose parent is %d, not the veilleur %d", i, pid, ppid, os.Getpid())
		}
		pids = append(pids, pid)
	}
	t.Logf("veilleur %d, exécutants %v", os.Getpid(), pids)
	if distinct := slices.Compact(slices.Sorted(slices.Values(pids))); len(distinct) != 3 {
		t.Errorf("exécutants %v: want one distinct process per connection", pids)
	}
	if owners := socketOwners(listener); !slices.Equal(owners, []int{os.Getpid()}) {
		t.Errorf("listening socket held by %v, want the veilleur %d alone", owners, os.Getpid())
	}
	if got := ts.Stats().Active; got != 3 {
		t.Errorf("Stats().Active = %d, want 3 children", got)
	}
}

// TestProcessChildCrash: kill -9 an exécutant; its client loses the
// connection, the veilleur reaps it and goes on serving.
func TestProcessChildCrash(t *testing.T) {
	ts := start(t, "process", 0)
	victim := dial(t, ts.addr)
	roundTrip(t, victim, "about to crash\n")
	pid := serverSideOwner(t, victim)
	if err := syscall.Kill(pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	victim.SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := victim.Read(make([]byte, 1)); n != 0 || err == nil || errors.Is(err, os.ErrDeadlineExceeded) {
		t.Errorf("client of the killed child: read %d, %v; want EOF or reset", n, err)
	}
	for deadline := time.Now().Add(3 * time.Second); ts.Stats().Active != 0; time.Sleep(20 * time.Millisecond) {
		if time.Now().After(deadline) {
			t.Fatalf("killed child not reaped: Stats().Active = %d", ts.Stats().Active)
		}
	}
	if _, err := os.Stat(fmt.Sprintf("/proc/%d", pid)); err == nil {
		t.Errorf("pid %d still exists (a zombie?)", pid)
	}
	c := dial(t, ts.addr)
	roundTrip(t, c, "the veilleur survived\n")
}
