package proxy

import (
	"fmt"

	"github.com/tenantproxy/tenantproxy/internal/wire"
)

// COPY FROM STDIN: once the server's CopyInResponse has arrived, the client's copy data streams
// to the backend, whatever its size, until CopyDone or CopyFail. The relay does not read the
// backend meanwhile.

// copyData streams one CopyData message to the backend, or drops it as the server does outside
// COPY.
func (c *clientConn) copyData() error {
	if !c.queue.CopyIn() || c.backend == nil {
		return c.in.Skip()
	}
	return c.in.CopyMessage(c.backend.Out)
}

// endCopy passes CopyDone or CopyFail on; the server answers the COPY next.
func (c *clientConn) endCopy(msg []byte) error {
	if !c.queue.CopyIn() || c.backend == nil {
		return nil
	}
	c.backend.Out.Write(msg)
	c.queue.EndCopy()
	return nil
}

// interruptCopy handles a message other than copy data during copy-in. The server ignores Flush
// and Sync there; any other message ends the COPY with an error and is itself thrown away. The
// proxy throws it away too, and ends the COPY with CopyFail, so that nothing it did not check
// reaches the server.
func (c *clientConn) interruptCopy(typ byte) error {
	if typ == wire.Flush || typ == wire.Sync {
		return nil
	}
	b := c.backend
	b.Out.Commit(wire.AppendCopyFail(b.Out.Bytes(), fmt.Sprintf("unexpected message type 0x%02X during COPY from stdin", typ)))
	c.queue.EndCopy()
	return nil
}
