package proxy

import (
	"encoding/binary"
	"net"
	"time"
)

// Instances behind one load balancer are peers: each hands out cancel keys whose process id
// carries its peer id (bits 24 to 30), and a CancelRequest that reaches an instance other than
// the one serving the client is forwarded, as it came, to that one, which checks the secret.
// Nothing else is shared.

// peerShift is where the peer id sits in a cancel key's process id.
const peerShift = 24

// A forwarded CancelRequest carries its own request code (the next after PostgreSQL's
// GSSENCRequest), so that a peer never forwards it again: two instances configured with the same
// peer id cannot bounce it between them.
const forwardedCancelCode = 80877105

// peerOf is the peer id a cancel key's process id carries.
func peerOf(pid uint32) int { return int(pid >> peerShift) }

// forwardCancel sends a CancelRequest meant for another peer to it. It reports whether the
// request belonged to another peer (and so is not this instance's to answer).
func (s *Server) forwardCancel(msg []byte, pid uint32) bool {
	cfg := s.Config()
	peer := peerOf(pid)
	if len(cfg.Peers) == 0 || peer == cfg.PeerID {
		return false
	}
	addr, ok := cfg.PeerAddress(peer)
	if !ok {
		s.log.Info().Int("peer", peer).Msg("cancel request for an unknown peer ignored")
		return true
	}
	forwarded := binary.BigEndian.AppendUint32(nil, cancelRequestSize)
	forwarded = binary.BigEndian.AppendUint32(forwarded, forwardedCancelCode)
	forwarded = append(forwarded, msg[8:cancelRequestSize]...)
	go func() {
		conn, err := net.DialTimeout("tcp", addr, 5*time.Second)
		if err != nil {
			s.log.Warn().Err(err).Int("peer", peer).Msg("forwarding a cancel request to a peer")
			return
		}
		defer conn.Close()
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		if _, err := conn.Write(forwarded); err != nil {
			s.log.Warn().Err(err).Int("peer", peer).Msg("forwarding a cancel request to a peer")
			return
		}
		// As PostgreSQL, the peer answers by closing the connection once the request is taken.
		conn.Read(make([]byte, 1))
		s.log.Debug().Int("peer", peer).Msg("cancel request forwarded to a peer")
	}()
	return true
}
