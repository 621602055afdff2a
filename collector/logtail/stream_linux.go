package logtail

import (
	"context"
	"errors"
	"io"
	"net"
	"os"
	"sync"
	"syscall"
	"time"
	"unsafe"

	"github.com/dockscope/dockscope/collector/logparse"
)

// rawStreams: the unix socket's log streams are read with unixStream.
const rawStreams = true

// unixStream is a connection to the Engine's unix socket read with plain
// system calls, outside Go's network poller.
//
// Why: dockerd writes and flushes every log message on its own, so a fast
// follow stream is a write per line. Go's poller registers a socket
// edge-triggered, and each of those writes wakes a thread parked in
// epoll_wait, whether or not anything waits for the socket — even while
// the reader is deliberately waiting for lines to pile up. Measured here
// (bench/logs, 1 × 500k lines), that cost a context switch every five
// lines in the agent and made dockerd itself spend a third more per line.
// Read outside the poller, a flowing stream is read on a schedule, a
// millisecond or so apart, in one system call, and dockerd's writes wake
// nobody.
//
// A stream with nothing to read waits for data through an epoll set of
// its own, in which the socket is armed for one event at a time
// (EPOLLONESHOT), and whose descriptor is in Go's poller: the wait parks
// the goroutine (an idle container costs no thread and no timer), and the
// first write wakes it, not the following ones.
//
// Read and Close are called from one goroutine; the stream's context may
// end at any time, which makes a waiting Read return.
type unixStream struct {
	fd  int
	ctx context.Context

	mu     sync.Mutex // closed and the descriptor's life, against interrupt
	closed bool
	stop   func() bool // unregisters interrupt

	set   *os.File // the epoll set, in Go's poller
	setFD uintptr
	setRC syscall.RawConn
	armed bool   // the socket was added to the set (re-armed with MOD)
	pacer *pacer // made when the stream first flows
	// last is when the last read that returned data did so; flowing says
	// the stream is read on a schedule, every pace, rather than on
	// readiness.
	last    time.Time
	flowing bool
	pace    time.Duration
	full    bool // the last read filled the buffer: more is waiting
	// declined: a read into a large buffer waited idleAfter and
	// returned 0, nil (logparse.IdleReadBytes); the next one waits.
	declined bool
	deadline bool // the epoll set has a read deadline
}

// idleAfter is how long a read waits with a large buffer before handing it
// back: far longer than a flowing stream's gaps (paceMax), so that it
// costs a busy stream nothing.
const idleAfter = 100 * time.Millisecond

// Pacing of a flowing stream. Each read costs the agent a wake-up, so a
// stream is read as seldom as it can be without dockerd ever waiting: the
// socket's send buffer holds ~250 messages (~28 KB of 70-byte lines;
// ~1.3 ms at dockerd's ~190k lines/s), and dockerd spends far more per line
// when its writes block. The interval aims at paceBytes per read, from the
// rate the stream flows at, between paceMin and paceMax. A read of
// flowBytes or more, or a second read within paceMin, says the stream
// flows.
const (
	paceMin   = 750 * time.Microsecond
	paceMax   = 4 * time.Millisecond
	paceBytes = 12 << 10
	flowBytes = 2 << 10
)

// dialUnixStream connects to the unix socket at path.
func dialUnixStream(ctx context.Context, path string) (*unixStream, error) {
	fd, err := syscall.Socket(syscall.AF_UNIX, syscall.SOCK_STREAM|syscall.SOCK_NONBLOCK|syscall.SOCK_CLOEXEC, 0)
	if err != nil {
		return nil, &net.OpError{Op: "dial", Net: "unix", Err: os.NewSyscallError("socket", err)}
	}
	err = syscall.Connect(fd, &syscall.SockaddrUnix{Name: path})
	if err != nil {
		syscall.Close(fd)
		// EAGAIN: the daemon's accept backlog is full; a retry with
		// backoff handles it like any failed connection.
		return nil, &net.OpError{Op: "dial", Net: "unix", Addr: &net.UnixAddr{Name: path, Net: "unix"}, Err: os.NewSyscallError("connect", err)}
	}
	set, setFD, err := newPollable("log stream epoll set", func() (uintptr, syscall.Errno) {
		fd, _, errno := syscall.RawSyscall(syscall.SYS_EPOLL_CREATE1, syscall.EPOLL_CLOEXEC, 0, 0)
		return fd, errno
	})
	if err != nil {
		syscall.Close(fd)
		return nil, err
	}
	s := &unixStream{fd: fd, ctx: ctx, set: set, setFD: setFD}
	s.setRC, err = set.SyscallConn()
	if err != nil {
		s.Close()
		return nil, err
	}
	s.stop = context.AfterFunc(ctx, s.interrupt)
	return s, nil
}

// newPollable makes a descriptor with create, sets it non-blocking and
// hands it to Go's poller (os.NewFile does so for non-blocking ones). The
// number is returned too: File.Fd would make the descriptor blocking.
func newPollable(name string, create func() (uintptr, syscall.Errno)) (*os.File, uintptr, error) {
	fd, errno := create()
	if errno != 0 {
		return nil, 0, os.NewSyscallError(name, errno)
	}
	if err := syscall.SetNonblock(int(fd), true); err != nil {
		syscall.Close(int(fd))
		return nil, 0, os.NewSyscallError(name, err)
	}
	return os.NewFile(fd, name), fd, nil
}

// interrupt makes a waiting or later Read return: a shut-down socket reads
// as end of stream and is readable for the poller.
func (s *unixStream) interrupt() {
	s.mu.Lock()
	defer s.mu.Unlock()
	if !s.closed {
		_ = syscall.Shutdown(s.fd, syscall.SHUT_RDWR)
	}
}

// Close releases the socket.
func (s *unixStream) Close() error {
	if s.stop != nil {
		s.stop()
	}
	s.set.Close()
	if s.pacer != nil {
		s.pacer.close()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return nil
	}
	s.closed = true
	if err := syscall.Close(s.fd); err != nil {
		return os.NewSyscallError("close", err)
	}
	return nil
}

// Write writes the whole of b (a request: a fresh connection has room).
func (s *unixStream) Write(b []byte) (int, error) {
	written := 0
	for written < len(b) {
		n, err := syscall.Write(s.fd, b[written:])
		switch {
		case err == syscall.EINTR:
			continue
		case err == syscall.EAGAIN:
			return written, errors.New("writing to the docker socket: no room for the request")
		case err != nil:
			return written, s.err("write", err)
		}
		written += n
	}
	return written, nil
}

// Read reads what the socket holds, waiting for the pace of a flowing
// stream or for data on an idle one.
//
// The reads are raw system calls: they never block, and a read of a few
// hundred messages takes long enough on a virtualised host (~40 µs) that
// Go's monitor thread would take the processor away from a declared
// system call and hand it to another thread, a wake-up per read for
// nothing.
func (s *unixStream) Read(p []byte) (int, error) {
	if len(p) == 0 {
		return 0, nil
	}
	if s.flowing && !s.full {
		if d := s.pace - time.Since(s.last); d > 0 {
			s.sleep(d)
		}
	}
	var n int
	for {
		var errno syscall.Errno
		n, errno = rawRead(uintptr(s.fd), p)
		if errno == 0 {
			break
		}
		if errno != syscall.EAGAIN {
			return 0, s.err("read", errno)
		}
		// Dry: wait until something comes. Not for long with the
		// caller's large buffer: a stream that stays quiet for
		// idleAfter is asked (once) to read again, and the line reader
		// then waits with a small one (64 KiB per idle container
		// otherwise; see logparse.IdleReadBytes).
		s.flowing = false
		limit := len(p) > logparse.IdleReadBytes && !s.declined
		if err := s.waitReadable(limit); err != nil {
			if limit && errors.Is(err, os.ErrDeadlineExceeded) {
				s.declined = true
				return 0, nil
			}
			return 0, err
		}
	}
	if n == 0 {
		if err := s.ctx.Err(); err != nil {
			return 0, err
		}
		return 0, io.EOF
	}
	now := time.Now()
	gap := now.Sub(s.last)
	switch {
	case s.flowing:
		s.pace = nextPace(n, gap)
	case n >= flowBytes || gap < paceMin:
		// Lines come faster than one read per interval: read them on a
		// schedule until a read finds nothing.
		s.flowing, s.pace = true, paceMin
	}
	s.last, s.full, s.declined = now, n == len(p), false
	return n, nil
}

// waitReadable arms the socket in the stream's epoll set for one event
// and parks until it comes.
func (s *unixStream) waitReadable(limit bool) error {
	switch {
	case limit:
		_ = s.set.SetReadDeadline(time.Now().Add(idleAfter))
		s.deadline = true
	case s.deadline:
		_ = s.set.SetReadDeadline(time.Time{})
		s.deadline = false
	}
	op := syscall.EPOLL_CTL_MOD
	if !s.armed {
		op = syscall.EPOLL_CTL_ADD
	}
	ev := syscall.EpollEvent{Events: syscall.EPOLLIN | syscall.EPOLLRDHUP | syscall.EPOLLONESHOT, Fd: int32(s.fd)}
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_EPOLL_CTL, s.setFD, uintptr(op), uintptr(s.fd), uintptr(unsafe.Pointer(&ev)), 0, 0); errno != 0 {
		return s.err("epoll_ctl", errno)
	}
	s.armed = true
	var events [1]syscall.EpollEvent
	var errno syscall.Errno
	err := s.setRC.Read(func(fd uintptr) bool {
		var n uintptr
		for {
			n, _, errno = syscall.RawSyscall6(syscall.SYS_EPOLL_PWAIT, fd, uintptr(unsafe.Pointer(&events[0])), 1, 0, 0, 0)
			if errno != syscall.EINTR {
				break
			}
		}
		return n > 0 || errno != 0
	})
	if err == nil && errno != 0 {
		err = errno
	}
	if errors.Is(err, os.ErrDeadlineExceeded) {
		return err
	}
	if err != nil {
		return s.err("epoll_pwait", err)
	}
	return nil
}

// sleep waits d on the stream's timer descriptor, or with a Go timer if
// there is none.
func (s *unixStream) sleep(d time.Duration) {
	if s.pacer == nil {
		p, err := newPacer()
		if err != nil {
			time.Sleep(d)
			return
		}
		s.pacer = p
	}
	if s.pacer.sleep(d) != nil {
		time.Sleep(d)
	}
}

// nextPace is the interval after a read of n bytes, gap after the one
// before: the time paceBytes take at that rate. A read of twice paceBytes
// may have found the socket full (dockerd waiting), and the rate it
// shows is then too low: back to the shortest interval.
func nextPace(n int, gap time.Duration) time.Duration {
	if n >= 2*paceBytes {
		return paceMin
	}
	return min(max(gap*paceBytes/time.Duration(n), paceMin), paceMax)
}

// rawRead reads a non-blocking descriptor without telling Go's scheduler:
// a declared system call would also wake its monitor thread when it
// sleeps (every time the agent is idle between two reads).
func rawRead(fd uintptr, p []byte) (int, syscall.Errno) {
	for {
		r, _, errno := syscall.RawSyscall(syscall.SYS_READ, fd, uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
		if errno != syscall.EINTR {
			return int(r), errno
		}
	}
}

func (s *unixStream) err(op string, err error) error {
	if cerr := s.ctx.Err(); cerr != nil {
		return cerr
	}
	return &net.OpError{Op: op, Net: "unix", Err: os.NewSyscallError(op, err)}
}

// pacer sleeps on a timer descriptor (timerfd) waited on in Go's poller.
// A Go timer (time.Sleep) costs each short sleep several thread wake-ups
// beyond the one that ends it: the runtime wakes a thread to watch the new
// timer, wakes another when the sleeper is ready to run, and its monitor
// thread sleeps only until the next timer, so it wakes each time too; and
// the poller sleeps in whole milliseconds. Measured with 1 ms sleeps
// between reads of a flowing stream: 3 context switches and 2.6 futex
// calls a read with time.Sleep, 1 and none with the timer descriptor.
type pacer struct {
	f  *os.File
	rc syscall.RawConn
	fd uintptr
}

type itimerspec struct {
	interval, value syscall.Timespec
}

func newPacer() (*pacer, error) {
	const clockMonotonic = 1
	f, fd, err := newPollable("timerfd_create", func() (uintptr, syscall.Errno) {
		fd, _, errno := syscall.RawSyscall(syscall.SYS_TIMERFD_CREATE, clockMonotonic, syscall.O_CLOEXEC, 0)
		return fd, errno
	})
	if err != nil {
		return nil, err
	}
	rc, err := f.SyscallConn()
	if err != nil {
		f.Close()
		return nil, err
	}
	return &pacer{f: f, rc: rc, fd: fd}, nil
}

// sleep arms the timer for d and waits for it to expire.
func (p *pacer) sleep(d time.Duration) error {
	spec := itimerspec{value: syscall.NsecToTimespec(int64(d))}
	if _, _, errno := syscall.RawSyscall6(syscall.SYS_TIMERFD_SETTIME, p.fd, 0, uintptr(unsafe.Pointer(&spec)), 0, 0, 0); errno != 0 {
		return os.NewSyscallError("timerfd_settime", errno)
	}
	var expirations [8]byte
	var errno syscall.Errno
	err := p.rc.Read(func(fd uintptr) bool {
		_, errno = rawRead(fd, expirations[:])
		return errno != syscall.EAGAIN
	})
	if err == nil && errno != 0 {
		err = os.NewSyscallError("read timerfd", errno)
	}
	return err
}

func (p *pacer) close() { p.f.Close() }
