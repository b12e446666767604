package proxy

import (
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"maps"
	"slices"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/wire"
)

const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	protocol30        = 3 << 16
)

// startupMessageLimit bounds every message before authentication succeeds, as PostgreSQL
// bounds the startup packet (MAX_STARTUP_PACKET_LENGTH): a client that has not logged in cannot
// make the proxy hold more.
const startupMessageLimit = 10000

// errCancelDone ends a connection that only carried a CancelRequest.
var errCancelDone = errors.New("cancel request handled")

// startup reads the startup packet (after any TLS negotiation), authenticates the client and
// picks its tenant. It answers cancel requests and refuses what it must with a FATAL error.
func (c *clientConn) startup() error {
	cfg := c.srv.Config()
	deadline := time.Now().Add(cfg.AuthTimeout.Duration)
	c.conn.SetDeadline(deadline)
	defer c.conn.SetDeadline(time.Time{})

	params, err := c.readStartupPacket()
	if err != nil {
		return err
	}
	if c.srv.nclients.Load() > int64(cfg.MaxClients) {
		return c.refuse(fatal(codeTooManyConnections, "sorry, too many clients already"))
	}
	req, perr := c.srv.startupRules.readStartup(params)
	c.user = req.user
	c.log = c.log.With().Str("user", c.user).Logger()
	switch {
	case c.user == "":
		return c.refuse(fatal(codeInvalidAuthSpec, "no PostgreSQL user name specified in startup packet"))
	case req.database == config.AdminDatabase:
		return c.startConsole(deadline)
	case req.database != cfg.Database:
		return c.refuse(fatal(codeInvalidCatalog, fmt.Sprintf("database %q does not exist", req.database)))
	case perr != nil:
		if perr.rule != "" {
			c.srv.metrics.refusals.WithLabelValues("", perr.rule).Inc()
			c.log.Warn().Str("rule", perr.rule).Msg("startup packet refused: " + perr.Message)
		}
		return c.refuse(perr)
	}
	a, err := c.userAccount(deadline)
	if err != nil {
		return err
	}
	if err := c.login(a); err != nil {
		return err
	}
	tenant, err := a.Tenant(req.tenant)
	if err != nil {
		usual, _ := a.Tenant("")
		c.srv.metrics.loginFailed(usual, "tenant")
		c.log.Warn().Str("tenant", req.tenant).Err(err).Msg("tenant refused")
		return c.refuse(fatal(codeInvalidAuthSpec, err.Error()))
	}
	tl := cfg.TenantLimits(tenant)
	c.limits = tenantLimits(tl, req.settings)
	c.session = newClientSession(tenant, cfg.Tenancy.Setting, req.settings)
	c.allowExplain = a.AllowExplain
	c.appName = req.settings["application_name"]
	c.log = c.log.With().Str("tenant", tenant).Logger()
	c.metrics = c.srv.metrics.forTenant(tenant)
	if perr := c.srv.paceLogin(c, tl.LoginRate, deadline); perr != nil {
		return c.refuse(perr)
	}
	if perr := c.srv.admit(c, a.MaxConnections); perr != nil {
		return c.refuse(perr)
	}
	c.srv.metrics.logins.WithLabelValues(c.metrics.label).Inc()
	c.srv.metrics.tenantClients.WithLabelValues(c.metrics.label).Inc()
	c.in.Limit, c.in.Budget = int(cfg.MaxMessageSize), c.srv.messageBudget(tenant)
	// Waiting for a backend session is not part of authentication: the checkout timeout
	// bounds it, not auth_timeout.
	c.conn.SetDeadline(time.Time{})
	return c.greet()
}

// readStartupPacket reads untyped messages until the StartupMessage, answering SSLRequest,
// GSSENCRequest and CancelRequest on the way.
func (c *clientConn) readStartupPacket() (map[string]string, error) {
	for {
		msg, err := c.in.NextStartup()
		if err != nil {
			if errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrMalformed) {
				return nil, c.refuse(fatal(codeProtocolViolation, "invalid startup packet: "+err.Error()))
			}
			return nil, err
		}
		code := binary.BigEndian.Uint32(msg[4:8])
		switch code {
		case sslRequestCode:
			if err := c.negotiateTLS(); err != nil {
				return nil, err
			}
		case gssEncRequestCode:
			c.conn.Write([]byte{'N'})
		case cancelRequestCode, forwardedCancelCode:
			c.handleCancel(msg, code == forwardedCancelCode)
			return nil, errCancelDone
		default:
			if code>>16 != 3 {
				return nil, c.refuse(fatal(codeFeatureNotSupported,
					fmt.Sprintf("unsupported frontend protocol %d.%d: tenantproxy speaks 3.0", code>>16, code&0xffff)))
			}
			if c.srv.Config().TLS.Mode == "require" && !c.tls {
				return nil, c.refuse(fatal(codeInvalidAuthSpec, "tenantproxy requires TLS: connect with sslmode=require"))
			}
			params, err := parseStartup(msg[8:])
			if err != nil {
				return nil, c.refuse(fatal(codeProtocolViolation, "invalid startup packet: "+err.Error()))
			}
			if code != protocol30 {
				c.negotiateProtocol(params)
			}
			return params, nil
		}
	}
}

// negotiateTLS answers an SSLRequest: 'S' and a handshake when TLS is configured, else 'N'.
func (c *clientConn) negotiateTLS() error {
	if c.in.Buffered() > 0 {
		// Bytes sent after SSLRequest and before the handshake would be read as if they had
		// come over TLS (CVE-2021-23222): refuse.
		return c.refuse(fatal(codeProtocolViolation, "received unencrypted data after SSL request"))
	}
	config := c.srv.tls.Load()
	if config == nil || c.tls {
		_, err := c.conn.Write([]byte{'N'})
		return err
	}
	if _, err := c.conn.Write([]byte{'S'}); err != nil {
		return err
	}
	tc := tls.Server(c.conn, config)
	if err := tc.Handshake(); err != nil {
		c.log.Debug().Err(err).Msg("TLS handshake")
		return err
	}
	c.conn = tc
	c.tls = true
	c.in.Reset(tc)
	c.out = wire.NewWriter(tc)
	c.out.LimitBlocking(tc, c.srv.Config().ClientWriteTimeout.Duration)
	return nil
}

// negotiateProtocol tells a client asking for 3.x (x > 0) or protocol options that we speak 3.0.
func (c *clientConn) negotiateProtocol(params map[string]string) {
	var unknown []string
	for name := range params {
		if strings.HasPrefix(name, "_pq_.") {
			unknown = append(unknown, name)
			delete(params, name)
		}
	}
	encode(c.out, &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unknown})
}

// greet sends what a server sends after authentication: AuthenticationOk, the server's
// settings (from a real backend session, with the client's own values), the proxy's cancel key,
// and ReadyForQuery.
func (c *clientConn) greet() error {
	b, perr := c.acquire()
	if perr != nil {
		perr.Severity = "FATAL"
		return c.refuse(perr)
	}
	c.session.adoptServerSpelling(b)
	c.out.Commit(wire.AppendAuthenticationOk(c.out.Bytes()))
	params := b.ReportedParams()
	for _, name := range slices.Sorted(maps.Keys(params)) {
		c.out.Commit(wire.AppendParameterStatus(c.out.Bytes(), name, params[name]))
	}
	c.srv.register(c)
	c.out.Commit(wire.AppendBackendKeyData(c.out.Bytes(), c.keyPID, c.keySecret[:]))
	writeReady(c.out, 'I')
	if err := c.srv.mode.idle(c); err != nil {
		return err
	}
	return c.out.Flush()
}
