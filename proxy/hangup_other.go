//go:build !linux

package proxy

import "net"

// peerClosed cannot tell without reading on this system: a client that leaves while waiting
// for a backend keeps its place until the checkout timeout.
func peerClosed(net.Conn) bool { return false }

// sentTerminate cannot tell on this system.
func sentTerminate(net.Conn) bool { return false }
