package proxy

import (
	"errors"
	"os"
	"sync"
	"syscall"

	"golang.org/x/sys/unix"
)

// An idle client in transaction mode holds no backend; it need not hold a goroutine or a read
// buffer either. Between transactions its goroutine ends, its buffer goes back to a pool and its
// socket waits in the parker's epoll set; the first byte it sends (or its hang-up) starts a new
// goroutine where the old one left off. Ten thousand idle clients then cost their sockets and
// their session state, not ten thousand stacks and buffers.
//
// The epoll set is itself watched by Go's netpoller (it is readable when a parked socket is),
// so waiting for it takes no thread.

// parking says whether clients park on this system.
const parking = true

// parker holds the parked clients.
type parker struct {
	epoll   *os.File
	fd      int // epoll's: os.File.Fd would make it blocking
	raw     syscall.RawConn
	mu      sync.Mutex
	parked  map[int32]*clientConn
	closed  bool
	stopped chan struct{}
}

func newParker() (*parker, error) {
	fd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return nil, err
	}
	p := &parker{epoll: os.NewFile(uintptr(fd), "parked clients"), fd: fd, parked: map[int32]*clientConn{}, stopped: make(chan struct{})}
	if p.raw, err = p.epoll.SyscallConn(); err != nil {
		p.epoll.Close()
		return nil, err
	}
	go p.run()
	return p, nil
}

// run resumes each client whose socket becomes readable, until close.
func (p *parker) run() {
	defer close(p.stopped)
	events := make([]unix.EpollEvent, 64)
	for {
		var n int
		var waitErr error
		err := p.raw.Read(func(fd uintptr) bool {
			n, waitErr = unix.EpollWait(int(fd), events, 0)
			return n > 0 || waitErr != nil && !errors.Is(waitErr, unix.EINTR)
		})
		if err != nil || waitErr != nil {
			return // closed
		}
		p.mu.Lock()
		for _, ev := range events[:n] {
			p.resumeLocked(p.parked[ev.Fd])
		}
		p.mu.Unlock()
	}
}

// park makes c wait in the epoll set, and reports whether it does: its goroutine must then end
// at once without touching c again.
func (p *parker) park(c *clientConn) bool {
	sc, ok := c.conn.(syscall.Conn)
	if !ok {
		return false
	}
	raw, err := sc.SyscallConn()
	if err != nil {
		return false
	}
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.closed {
		return false
	}
	parked := false
	raw.Control(func(fd uintptr) {
		ev := unix.EpollEvent{Events: unix.EPOLLIN | unix.EPOLLRDHUP | unix.EPOLLONESHOT, Fd: int32(fd)}
		if unix.EpollCtl(p.fd, unix.EPOLL_CTL_ADD, int(fd), &ev) == nil {
			c.parkedFD, parked = int32(fd), true
			p.parked[int32(fd)] = c
		}
	})
	return parked
}

// unpark resumes c now if it is parked: the operator ended it, or the proxy shuts down.
func (p *parker) unpark(c *clientConn) {
	p.mu.Lock()
	defer p.mu.Unlock()
	if p.parked[c.parkedFD] == c {
		p.resumeLocked(c)
	}
}

// resumeLocked takes c out of the epoll set and serves it on a new goroutine.
func (p *parker) resumeLocked(c *clientConn) {
	if c == nil {
		return
	}
	delete(p.parked, c.parkedFD)
	unix.EpollCtl(p.fd, unix.EPOLL_CTL_DEL, int(c.parkedFD), nil)
	go c.serveLoop()
}

// close resumes every parked client and stops: nothing is parked afterwards.
func (p *parker) close() {
	p.mu.Lock()
	if !p.closed {
		p.closed = true
		for _, c := range p.parked {
			p.resumeLocked(c)
		}
		p.epoll.Close()
	}
	p.mu.Unlock()
	<-p.stopped
}

// count is how many clients are parked now.
func (p *parker) count() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return len(p.parked)
}

// resumeAll resumes every parked client (a shutdown wakes them to be told).
func (p *parker) resumeAll() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, c := range p.parked {
		p.resumeLocked(c)
	}
}
