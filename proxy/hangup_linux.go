package proxy

import (
	"crypto/tls"
	"net"

	"golang.org/x/sys/unix"
)

// peerClosed reports whether the peer of a TCP connection has closed its side, without reading:
// the socket is in CLOSE-WAIT (or further) once the peer's FIN arrived, even with unread data
// still queued, which a peek at the data could not tell.
func peerClosed(conn net.Conn) bool {
	if tc, ok := conn.(*tls.Conn); ok {
		conn = tc.NetConn()
	}
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return false
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return true
	}
	closed := false
	raw.Control(func(fd uintptr) {
		info, err := unix.GetsockoptTCPInfo(int(fd), unix.IPPROTO_TCP, unix.TCP_INFO)
		closed = err != nil || info.State != tcpEstablished
	})
	return closed
}

// tcpEstablished is TCP_ESTABLISHED of the kernel's TCP states.
const tcpEstablished = 1
