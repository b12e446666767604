//go:build !linux

package proxy

// Without epoll, idle clients keep their goroutines: nothing is ever parked.
const parking = false

type parker struct{}

func newParker() (*parker, error)     { return &parker{}, nil }
func (*parker) park(*clientConn) bool { return false }
func (*parker) unpark(*clientConn)    {}
func (*parker) close()                {}
func (*parker) resumeAll()            {}
