//go:build !portable

package registry

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"sync/atomic"
	"unsafe"

	"golang.org/x/sys/unix"
)

// uring writes and fdatasyncs journal frames through an io_uring, so that
// no goroutine sits in a blocking system call while the disk works. A
// blocking fdatasync holds a thread and its P in a system call; the
// runtime's sysmon then polls every 20 µs to hand the P to another thread,
// and with a write every millisecond it never slows down again. Beside
// dnsperf with 1,000 API writes/s, sysmon and the thread switches it
// causes were 17% of the server's CPU, and the UDP answer rate was 30%
// lower than with the fsync kept out of the scheduler's sight. Here the
// kernel does the write and the sync in a worker of its own, and the
// leader waits for their completion on an eventfd through the runtime's
// poller, like any socket.
//
// Only the journal's leader uses it, one write and sync at a time (see
// journal.wait), so it needs no lock. The ring is the smallest there is:
// two entries, a write linked to an fdatasync.
type uring struct {
	fd   int
	ev   *os.File // eventfd, readable once a completion is posted
	ring []byte   // the submission and completion rings, one mapping
	sqes []byte   // the submission entries

	sqTail, sqMask, cqHead, cqTail, cqMask *uint32
	sqArray                                unsafe.Pointer
	cqes                                   unsafe.Pointer
}

// The kernel's ABI, from <linux/io_uring.h>.
const (
	ioringOffSQRing    = 0
	ioringOffSQEs      = 0x10000000
	ioringFeatSingleMM = 1 << 0
	ioringRegEventfd   = 4
	ioringOpFsync      = 3
	ioringOpWrite      = 23 // Linux 5.6
	ioringFsyncData    = 1 << 0
	iosqeIOLink        = 1 << 2
	sqeSize            = 64
	cqeSize            = 16
)

type sqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Flags, Dropped, Array, Resv1 uint32
	UserAddr                                                        uint64
}

type cqringOffsets struct {
	Head, Tail, RingMask, RingEntries, Overflow, CQEs, Flags, Resv1 uint32
	UserAddr                                                        uint64
}

type uringParams struct {
	SQEntries, CQEntries, Flags, SQThreadCPU, SQThreadIdle, Features, WQFd uint32
	Resv                                                                   [3]uint32
	SQOff                                                                  sqringOffsets
	CQOff                                                                  cqringOffsets
}

// newURing sets up a ring, or says why it cannot: kernels before 5.6,
// io_uring disabled by sysctl (kernel.io_uring_disabled) or forbidden by a
// container's seccomp profile. The journal then calls fdatasync itself.
func newURing() (*uring, error) {
	var p uringParams
	fd, _, e := unix.Syscall(unix.SYS_IO_URING_SETUP, 2, uintptr(unsafe.Pointer(&p)), 0)
	if e != 0 {
		return nil, fmt.Errorf("io_uring_setup: %w", e)
	}
	u := &uring{fd: int(fd)}
	if p.Features&ioringFeatSingleMM == 0 {
		u.close()
		return nil, errors.New("io_uring: no single mapping of the rings (Linux before 5.4)")
	}
	size := max(p.SQOff.Array+p.SQEntries*4, p.CQOff.CQEs+p.CQEntries*cqeSize)
	ring, err := unix.Mmap(u.fd, ioringOffSQRing, int(size), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		u.close()
		return nil, fmt.Errorf("io_uring: map rings: %w", err)
	}
	u.ring = ring
	sqes, err := unix.Mmap(u.fd, ioringOffSQEs, int(p.SQEntries*sqeSize), unix.PROT_READ|unix.PROT_WRITE, unix.MAP_SHARED|unix.MAP_POPULATE)
	if err != nil {
		u.close()
		return nil, fmt.Errorf("io_uring: map entries: %w", err)
	}
	u.sqes = sqes
	at := func(off uint32) *uint32 { return (*uint32)(unsafe.Pointer(&ring[off])) }
	u.sqTail, u.sqMask = at(p.SQOff.Tail), at(p.SQOff.RingMask)
	u.cqHead, u.cqTail, u.cqMask = at(p.CQOff.Head), at(p.CQOff.Tail), at(p.CQOff.RingMask)
	u.sqArray, u.cqes = unsafe.Pointer(&ring[p.SQOff.Array]), unsafe.Pointer(&ring[p.CQOff.CQEs])

	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		u.close()
		return nil, fmt.Errorf("io_uring: eventfd: %w", err)
	}
	// A non-blocking descriptor: os.File reads it through the poller.
	u.ev = os.NewFile(uintptr(efd), "io_uring-eventfd")
	ev := int32(efd)
	if _, _, e := unix.Syscall6(unix.SYS_IO_URING_REGISTER, fd, ioringRegEventfd, uintptr(unsafe.Pointer(&ev)), 1, 0, 0); e != 0 {
		u.close()
		return nil, fmt.Errorf("io_uring: register eventfd: %w", e)
	}
	return u, nil
}

// writeSync is pwrite(f, buf, off) then fdatasync(f), done by the kernel.
// A short write ends with the rest written and synced the plain way. An
// error of the fdatasync is a *syncError: the journal never retries one.
func (u *uring) writeSync(f *os.File, buf []byte, off int64) error {
	fd := int32(f.Fd())
	tail := atomic.LoadUint32(u.sqTail)
	mask := *u.sqMask
	for i := range uint32(2) {
		slot := (tail + i) & mask
		sqe := u.sqes[slot*sqeSize : (slot+1)*sqeSize]
		clear(sqe)
		if i == 0 {
			sqe[0], sqe[1] = ioringOpWrite, iosqeIOLink
			*(*uint64)(unsafe.Pointer(&sqe[8])) = uint64(off)
			*(*uint64)(unsafe.Pointer(&sqe[16])) = uint64(uintptr(unsafe.Pointer(unsafe.SliceData(buf))))
			*(*uint32)(unsafe.Pointer(&sqe[24])) = uint32(len(buf))
		} else {
			sqe[0] = ioringOpFsync
			*(*uint32)(unsafe.Pointer(&sqe[28])) = ioringFsyncData
		}
		*(*int32)(unsafe.Pointer(&sqe[4])) = fd
		*(*uint64)(unsafe.Pointer(&sqe[32])) = uint64(i) // user_data: which one
		*(*uint32)(unsafe.Add(u.sqArray, 4*slot)) = slot
	}
	atomic.StoreUint32(u.sqTail, tail+2)
	// Submitting does not wait: a write or a sync that would block goes
	// to the kernel's worker, so the raw call returns at once and is
	// never seen by the scheduler as a system call that may block.
	for {
		n, _, e := unix.RawSyscall6(unix.SYS_IO_URING_ENTER, uintptr(u.fd), 2, 0, 0, 0, 0)
		if e == unix.EINTR {
			continue
		}
		if e != 0 {
			return fmt.Errorf("io_uring_enter: %w", e)
		}
		if n != 2 {
			return fmt.Errorf("io_uring_enter: %d of 2 entries submitted", n)
		}
		break
	}

	var res [2]int32
	for got := 0; got < 2; {
		head := atomic.LoadUint32(u.cqHead)
		for ; head != atomic.LoadUint32(u.cqTail) && got < 2; head++ {
			cqe := unsafe.Add(u.cqes, cqeSize*uintptr(head&*u.cqMask))
			res[*(*uint64)(cqe)&1] = *(*int32)(unsafe.Add(cqe, 8))
			got++
		}
		atomic.StoreUint32(u.cqHead, head)
		if got < 2 {
			var b [8]byte
			if _, err := u.ev.Read(b[:]); err != nil {
				return fmt.Errorf("io_uring: wait for completion: %w", err)
			}
		}
	}
	runtime.KeepAlive(buf) // the kernel had its address until now

	switch written := res[0]; {
	case written < 0:
		return fmt.Errorf("write: %w", unix.Errno(-written))
	case int(written) < len(buf):
		// The sync was cancelled with the chain: finish plainly.
		if _, err := f.WriteAt(buf[written:], off+int64(written)); err != nil {
			return err
		}
		if err := unix.Fdatasync(int(fd)); err != nil {
			return &syncError{err}
		}
	case res[1] < 0:
		return &syncError{unix.Errno(-res[1])}
	}
	return nil
}

func (u *uring) close() {
	if u.ev != nil {
		u.ev.Close()
	}
	if u.sqes != nil {
		unix.Munmap(u.sqes)
	}
	if u.ring != nil {
		unix.Munmap(u.ring)
	}
	unix.Close(u.fd)
}
