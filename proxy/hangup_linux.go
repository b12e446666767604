package proxy

import (
	"crypto/tls"
	"encoding/binary"
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

// sentTerminate reports whether the client has sent a Terminate among the messages it sent and
// the proxy has not read yet, without reading: a client that gives up on a request sends one and
// waits for the server to close (pgx does, for up to 15 seconds). Over TLS it cannot tell.
func sentTerminate(conn net.Conn) bool {
	tcp, ok := conn.(*net.TCPConn)
	if !ok {
		return false
	}
	raw, err := tcp.SyscallConn()
	if err != nil {
		return false
	}
	var buf [4096]byte
	n := 0
	raw.Control(func(fd uintptr) {
		n, _, _ = unix.Recvfrom(int(fd), buf[:], unix.MSG_PEEK|unix.MSG_DONTWAIT)
	})
	for i := 0; i+5 <= n; {
		if buf[i] == 'X' {
			return true
		}
		size := int(binary.BigEndian.Uint32(buf[i+1:]))
		if size < 4 {
			return false
		}
		i += 1 + size
	}
	return false
}
