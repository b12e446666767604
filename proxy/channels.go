package proxy

import (
	"encoding/binary"
	"errors"
	"fmt"
	"os"
	"strings"
	"time"

	pg_query "github.com/pganalyze/pg_query_go/v6"

	"github.com/tenantproxy/tenantproxy/internal/wire"
	"github.com/tenantproxy/tenantproxy/lockdown"
)

// Notification channels are shared by the whole database, so each tenant gets its own: the
// channel names of a client's LISTEN, UNLISTEN and NOTIFY are prefixed with its tenant's
// (lockdown.ChannelPrefix) on the way in, and the prefix is taken off the notifications on the
// way out; pg_notify goes to a wrapper in the database that prefixes the same way. LISTEN needs a
// session of its own (session pooling), and a listening client hears its notifications while it
// waits, as it would from PostgreSQL.

// mapChannels rewrites the channel names of the LISTEN, UNLISTEN and NOTIFY statements of text
// onto the tenant's own. The statements are found by PostgreSQL's parser and their names among
// the tokens of its scanner.
func mapChannels(text []byte, prefix string) (string, *pgError) {
	tree, err := pg_query.Parse(string(text))
	if err != nil {
		return "", errorf(codeSyntaxError, err.Error())
	}
	scan, err := pg_query.Scan(string(text))
	if err != nil {
		return "", errorf(codeSyntaxError, err.Error())
	}
	tokens := scan.GetTokens()
	type replacement struct {
		start, end int
		name       string
	}
	var replacements []replacement
	for _, raw := range tree.GetStmts() {
		var name string
		switch n := raw.GetStmt().GetNode().(type) {
		case *pg_query.Node_ListenStmt:
			name = n.ListenStmt.GetConditionname()
		case *pg_query.Node_UnlistenStmt:
			if name = n.UnlistenStmt.GetConditionname(); name == "" {
				continue // UNLISTEN *: the session's own channels only
			}
		case *pg_query.Node_NotifyStmt:
			name = n.NotifyStmt.GetConditionname()
		default:
			continue
		}
		if len(name) > lockdown.MaxChannelName {
			return "", errorf("42622", fmt.Sprintf("tenantproxy: channel name %q is too long: at most %d bytes", name, lockdown.MaxChannelName))
		}
		// The statement's keyword, then its channel name (comments aside).
		var words []*pg_query.ScanToken
		for _, t := range tokens {
			if int(t.GetStart()) >= int(raw.GetStmtLocation()) && t.GetToken() != pg_query.Token_SQL_COMMENT && t.GetToken() != pg_query.Token_C_COMMENT {
				if words = append(words, t); len(words) == 2 {
					break
				}
			}
		}
		if len(words) != 2 {
			return "", errorf(codeSyntaxError, "tenantproxy: a channel statement it could not read")
		}
		replacements = append(replacements, replacement{int(words[1].GetStart()), int(words[1].GetEnd()), name})
	}
	out := string(text)
	for i := len(replacements) - 1; i >= 0; i-- {
		r := replacements[i]
		out = out[:r.start] + `"` + strings.ReplaceAll(prefix+r.name, `"`, `""`) + `"` + out[r.end:]
	}
	return out, nil
}

// clientNotification takes a NotificationResponse from the backend and returns it as the client
// must see it: the channel without its tenant's prefix, and the process id of the client's own
// cancel key when the client's session sent it. A notification of another tenant's channel (which
// the session never listens to) gives nil.
func (c *clientConn) clientNotification(msg []byte) []byte {
	body := msg[wire.HeaderSize:]
	if len(body) < 4 {
		return nil
	}
	pid := binary.BigEndian.Uint32(body)
	channel, rest, ok := wire.CString(body[4:])
	if !ok {
		return nil
	}
	name, ours := strings.CutPrefix(string(channel), lockdown.ChannelPrefix(c.session.tenant))
	if !ours {
		return nil
	}
	if c.backend != nil && pid == c.backend.PID() {
		pid = c.keyPID
	}
	out, at := wire.BeginMessage(nil, wire.NotificationResponse)
	out = binary.BigEndian.AppendUint32(out, pid)
	out = append(out, name...)
	out = append(out, 0)
	return wire.EndMessage(append(out, rest...), at)
}

// waitListening waits for the client's next message while relaying what its backend sends
// meanwhile: notifications of the channels it listens to, and the notices and parameter changes
// that come with them. It returns once the client's message has arrived (or its connection
// failed), with the backend left as it was.
func (c *clientConn) waitListening() error {
	b := c.backend
	done := make(chan error, 1)
	go func() { done <- c.relayWhileIdle() }()
	_, _, err := c.in.PeekHeader()
	// Stop the relay of notifications: it reads the backend, which the serve loop needs now.
	b.SetReadDeadline(time.Now())
	relayErr := <-done
	b.SetReadDeadline(time.Time{})
	if relayErr != nil && !errors.Is(relayErr, os.ErrDeadlineExceeded) {
		c.log.Warn().Err(relayErr).Msg("backend session lost while the client listened")
		c.discardBackend()
		return fatal(codeConnectionFailure, "tenantproxy: the database session was lost")
	}
	return err
}

// relayWhileIdle passes what the backend sends while no request is in flight to the client.
func (c *clientConn) relayWhileIdle() error {
	b := c.backend
	for {
		typ, msg, err := b.In.Next()
		if err != nil {
			return err
		}
		switch typ {
		case wire.NotificationResponse:
			if out := c.clientNotification(msg); out != nil {
				c.out.Write(out)
			}
		case wire.ParameterStatus:
			b.NoteParameter(msg)
			c.out.Write(msg)
		case wire.NoticeResponse:
			c.out.Write(msg)
		case wire.ErrorResponse: // a FATAL error: the server ends the session
			c.out.Write(msg)
			c.out.Flush()
			return errors.New("the server ended the session")
		default:
			return fmt.Errorf("unexpected message %q from an idle backend", typ)
		}
		if err := c.out.Flush(); err != nil {
			return nil // the client's side fails the serve loop, not this relay
		}
	}
}
