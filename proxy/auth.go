package proxy

import (
	"context"
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/tenantproxy/tenantproxy/accounts"
	"github.com/tenantproxy/tenantproxy/internal/wire"
)

// userAccount looks up the logging-in user's account: nil for an unknown user, who is then
// refused exactly as a wrong password is. When the tenant directory cannot be asked, the
// client is told so (FATAL 08006).
func (c *clientConn) userAccount(deadline time.Time) (*accounts.Account, error) {
	ctx, cancel := context.WithDeadline(context.Background(), deadline)
	defer cancel()
	a, err := c.srv.accounts.User(ctx, c.user)
	if err != nil {
		c.srv.metrics.loginFailed("", "directory")
		c.log.Error().Err(err).Msg("login refused: the tenant directory cannot be read")
		e := fatal(codeConnectionFailure, "tenantproxy: the tenant directory cannot be reached")
		e.Hint = "Try again later; the operator sees the cause in the proxy's log."
		return nil, c.refuse(e)
	}
	return a, nil
}

// login authenticates the client as account a (nil: an unknown user); a refusal is sent.
func (c *clientConn) login(a *accounts.Account) error {
	err := c.authenticate(a)
	var pe *pgError
	if errors.As(err, &pe) {
		return c.refuse(pe)
	}
	return err
}

// authenticate runs SCRAM-SHA-256 (or md5 when allowed and the user has an md5 verifier).
// Unknown users (a == nil) go through the same exchange against a made-up verifier and fail the
// same way, so the answer never tells whether a user exists.
func (c *clientConn) authenticate(a *accounts.Account) error {
	failed := fatal(codeInvalidPassword, fmt.Sprintf("password authentication failed for user %q", c.user))
	known := a != nil
	if known && a.SCRAM == nil {
		if !c.srv.Config().AllowMD5 {
			return failed
		}
		return c.authenticateMD5(a, failed)
	}
	var creds *scram.StoredCredentials
	if known {
		creds = a.SCRAM
	} else {
		creds = c.srv.mockCredentials(c.user)
	}
	server, err := scram.SHA256.NewServer(func(string) (scram.StoredCredentials, error) { return *creds, nil })
	if err != nil {
		return err
	}
	conv := server.NewConversation()

	encode(c.out, &pgproto3.AuthenticationSASL{AuthMechanisms: []string{"SCRAM-SHA-256"}})
	body, err := c.readPassword()
	if err != nil {
		return err
	}
	var initial pgproto3.SASLInitialResponse
	if err := initial.Decode(body); err != nil || initial.AuthMechanism != "SCRAM-SHA-256" {
		return fatal(codeProtocolViolation, "expected SASLInitialResponse for SCRAM-SHA-256")
	}
	challenge, err := conv.Step(string(initial.Data))
	if err != nil {
		return c.authFailed(a, failed, err)
	}
	encode(c.out, &pgproto3.AuthenticationSASLContinue{Data: []byte(challenge)})
	body, err = c.readPassword()
	if err != nil {
		return err
	}
	final, err := conv.Step(string(body))
	if err != nil || !known || !conv.Valid() {
		return c.authFailed(a, failed, err)
	}
	encode(c.out, &pgproto3.AuthenticationSASLFinal{Data: []byte(final)})
	return nil
}

func (c *clientConn) authenticateMD5(a *accounts.Account, failed *pgError) error {
	var salt [4]byte
	rand.Read(salt[:])
	encode(c.out, &pgproto3.AuthenticationMD5Password{Salt: salt})
	body, err := c.readPassword()
	if err != nil {
		return err
	}
	sum := md5.Sum(append([]byte(a.MD5[3:]), salt[:]...))
	want := "md5" + hex.EncodeToString(sum[:])
	got, _, _ := wire.CString(body)
	if subtle.ConstantTimeCompare(got, []byte(want)) != 1 {
		return c.authFailed(a, failed, errors.New("md5 mismatch"))
	}
	return nil
}

// authFailed counts and logs a wrong password (or unknown user: a is nil) and returns failed.
func (c *clientConn) authFailed(a *accounts.Account, failed *pgError, cause error) error {
	tenant := ""
	if a != nil {
		tenant, _ = a.Tenant("")
	}
	c.srv.metrics.loginFailed(tenant, "password")
	c.log.Warn().Err(cause).Msg("authentication failed")
	return failed
}

// readPassword sends what the client is owed and reads the body of its next PasswordMessage
// ('p').
func (c *clientConn) readPassword() ([]byte, error) {
	if err := c.out.Flush(); err != nil {
		return nil, err
	}
	typ, msg, err := c.in.Next()
	if err != nil {
		switch {
		case errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrMalformed):
			return nil, fatal(codeProtocolViolation, "invalid authentication message: "+err.Error())
		case errors.Is(err, os.ErrDeadlineExceeded):
			// As PostgreSQL says past authentication_timeout.
			c.conn.SetWriteDeadline(time.Now().Add(time.Second))
			return nil, fatal(codeQueryCanceled, "canceling authentication due to timeout")
		}
		return nil, err
	}
	if typ != wire.PasswordMessage {
		return nil, fatal(codeProtocolViolation, fmt.Sprintf("expected a password message, got message type %q", typ))
	}
	return msg[wire.HeaderSize:], nil
}

// mockCredentials derives a stable fake verifier for an unknown user.
func (s *Server) mockCredentials(user string) *scram.StoredCredentials {
	mac := hmac.New(sha256.New, s.mockSalt[:])
	mac.Write([]byte(user))
	sum := mac.Sum(nil)
	return &scram.StoredCredentials{
		KeyFactors: scram.KeyFactors{Salt: string(sum[:16]), Iters: 4096},
		StoredKey:  sum,
		ServerKey:  sum,
	}
}

// encode appends a protocol message that pgproto3 builds (the SASL exchange's) to w.
func encode(w *wire.Writer, m interface {
	Encode([]byte) ([]byte, error)
}) {
	b, _ := m.Encode(w.Bytes())
	w.Commit(b)
}
