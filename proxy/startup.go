package proxy

import (
	"crypto/hmac"
	"crypto/md5"
	"crypto/rand"
	"crypto/sha256"
	"crypto/subtle"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"fmt"
	"strings"
	"time"

	"github.com/jackc/pgx/v5/pgproto3"
	"github.com/xdg-go/scram"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/wire"
	"github.com/tenantproxy/tenantproxy/policy"
	"github.com/tenantproxy/tenantproxy/session"
)

const (
	sslRequestCode    = 80877103
	gssEncRequestCode = 80877104
	cancelRequestCode = 80877102
	protocol30        = 3 << 16
)

// errCancelDone ends a connection that only carried a CancelRequest.
var errCancelDone = errors.New("cancel request handled")

// startupParameters are the parameters a client may send, by lower-case name, with the name
// the server uses. Everything else is refused: the client's startup packet is never forwarded.
var startupParameters = map[string]string{
	"application_name":   "application_name",
	"client_encoding":    "client_encoding",
	"datestyle":          "DateStyle",
	"timezone":           "TimeZone",
	"intervalstyle":      "IntervalStyle",
	"extra_float_digits": "extra_float_digits",
	"search_path":        "search_path",
}

// trackedSettingNames are the settings a client may change at session level in transaction
// mode: the server reports their changes, so the proxy follows them and puts them back.
func trackedSettingNames() []string {
	return []string{"application_name", "client_encoding", "datestyle", "intervalstyle", "timezone",
		"standard_conforming_strings", "default_transaction_read_only"}
}

// startup reads the startup packet (after any TLS negotiation), authenticates the client and
// picks its tenant. It answers cancel requests and refuses what it must with a FATAL error.
func (c *clientConn) startup() error {
	c.conn.SetDeadline(time.Now().Add(c.srv.cfg.AuthTimeout.Duration))
	defer c.conn.SetDeadline(time.Time{})

	var params map[string]string
	for params == nil {
		msg, err := c.in.NextStartup()
		if err != nil {
			if errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrMalformed) {
				return c.refuse(fatal(codeProtocolViolation, "invalid startup packet: "+err.Error()))
			}
			return err
		}
		code := binary.BigEndian.Uint32(msg[4:8])
		switch code {
		case sslRequestCode:
			if err := c.negotiateTLS(); err != nil {
				return err
			}
		case gssEncRequestCode:
			c.conn.Write([]byte{'N'})
		case cancelRequestCode:
			c.handleCancel(msg)
			return errCancelDone
		default:
			if code>>16 != 3 {
				return c.refuse(fatal(codeFeatureNotSupported,
					fmt.Sprintf("unsupported frontend protocol %d.%d: tenantproxy speaks 3.0", code>>16, code&0xffff)))
			}
			if c.srv.cfg.TLS.Mode == "require" && !c.tls {
				return c.refuse(fatal(codeInvalidAuthSpec, "tenantproxy requires TLS: connect with sslmode=require"))
			}
			p, err := parseStartup(msg[8:])
			if err != nil {
				return c.refuse(fatal(codeProtocolViolation, "invalid startup packet: "+err.Error()))
			}
			if code != protocol30 {
				c.negotiateProtocol(code, p)
			}
			params = p
		}
	}

	if c.srv.nclients.Load() > int64(c.srv.cfg.MaxClients) {
		return c.refuse(fatal(codeTooManyConnections, "sorry, too many clients already"))
	}
	c.user = params["user"]
	c.log = c.log.With().Str("user", c.user).Logger()
	if c.user == "" {
		return c.refuse(fatal(codeInvalidAuthSpec, "no PostgreSQL user name specified in startup packet"))
	}
	if db := params["database"]; db != c.srv.cfg.Database {
		return c.refuse(fatal(codeInvalidCatalog, fmt.Sprintf("database %q does not exist", db)))
	}
	requested, perr := c.takeParameters(params)
	if perr != nil {
		return c.refuse(perr)
	}
	if err := c.authenticate(); err != nil {
		var pe *pgError
		if errors.As(err, &pe) {
			return c.refuse(pe)
		}
		return err
	}
	tenant, err := c.srv.tenants.Resolve(c.user, requested)
	if err != nil {
		c.srv.metrics.authFailures.WithLabelValues("tenant").Inc()
		c.log.Warn().Str("tenant", requested).Err(err).Msg("tenant refused")
		return c.refuse(fatal(codeInvalidAuthSpec, err.Error()))
	}
	c.tenant = tenant
	c.log = c.log.With().Str("tenant", tenant).Logger()
	// Waiting for a backend session is not part of authentication: the checkout timeout
	// bounds it, not auth_timeout.
	c.conn.SetDeadline(time.Time{})
	return c.greet()
}

// negotiateTLS answers an SSLRequest: 'S' and a handshake when TLS is configured, else 'N'.
func (c *clientConn) negotiateTLS() error {
	if c.in.Buffered() > 0 {
		// Bytes sent after SSLRequest and before the handshake would be read as if they had
		// come over TLS (CVE-2021-23222): refuse.
		return c.refuse(fatal(codeProtocolViolation, "received unencrypted data after SSL request"))
	}
	if c.srv.tls == nil || c.tls {
		_, err := c.conn.Write([]byte{'N'})
		return err
	}
	if _, err := c.conn.Write([]byte{'S'}); err != nil {
		return err
	}
	tc := tls.Server(c.conn, c.srv.tls)
	if err := tc.Handshake(); err != nil {
		c.log.Debug().Err(err).Msg("TLS handshake")
		return err
	}
	c.conn = tc
	c.tls = true
	c.in.Reset(tc)
	c.out = wire.NewWriter(tc)
	c.in.BeforeBlock = c.out.Flush
	return nil
}

// negotiateProtocol tells a client asking for 3.x (x > 0) or protocol options that we speak 3.0.
func (c *clientConn) negotiateProtocol(code uint32, params map[string]string) {
	var unknown []string
	for name := range params {
		if strings.HasPrefix(name, "_pq_.") {
			unknown = append(unknown, name)
			delete(params, name)
		}
	}
	encode(c.out, &pgproto3.NegotiateProtocolVersion{NewestMinorProtocol: 0, UnrecognizedOptions: unknown})
}

func parseStartup(b []byte) (map[string]string, error) {
	params := map[string]string{}
	for {
		name, rest, ok := wire.CString(b)
		if !ok {
			return nil, errors.New("missing terminator")
		}
		if len(name) == 0 {
			if len(rest) != 0 {
				return nil, errors.New("data after the terminator")
			}
			return params, nil
		}
		value, rest2, ok := wire.CString(rest)
		if !ok {
			return nil, errors.New("parameter without a value")
		}
		if _, dup := params[string(name)]; dup {
			return nil, fmt.Errorf("parameter %q given twice", name)
		}
		params[string(name)] = string(value)
		b = rest2
	}
}

// takeParameters keeps the allowed startup parameters as the client's settings and returns
// the tenant it asked for. The packet never reaches the server; the reserved namespace, options
// other than -c tenant=NAME, and replication are refused outright.
func (c *clientConn) takeParameters(params map[string]string) (tenant string, perr *pgError) {
	settings := map[string]string{}
	choose := func(t string) *pgError {
		if tenant != "" && t != tenant {
			return fatal(codeInvalidAuthSpec, fmt.Sprintf("conflicting tenant choices %q and %q", tenant, t))
		}
		tenant = t
		return nil
	}
	for name, value := range params {
		lower := strings.ToLower(name)
		switch {
		case lower == "user" || lower == "database":
		case lower == "tenant":
			if err := choose(value); err != nil {
				return "", err
			}
		case lower == "options":
			t, err := c.parseOptions(value)
			if err != nil {
				return "", err
			}
			if t != "" {
				if err := choose(t); err != nil {
					return "", err
				}
			}
		case lower == "replication":
			return "", fatal(codeInsufficientPriv, "replication connections are not accepted by tenantproxy")
		case c.reserved(lower):
			c.srv.metrics.refusals.WithLabelValues("", "startup-reserved").Inc()
			c.log.Warn().Str("parameter", name).Str("rule", "startup-reserved").Msg("startup packet refused")
			return "", fatal(codeInsufficientPriv, fmt.Sprintf("parameter %q is reserved: the tenant context is set by the proxy", name))
		case lower == "search_path" && !c.srv.cfg.Tenancy.AllowSearchPath:
			return "", fatal(codeFeatureNotSupported, "search_path may not be set at startup (tenancy.allow_search_path is off)")
		default:
			canonical, ok := startupParameters[lower]
			if !ok {
				return "", fatal(codeFeatureNotSupported, fmt.Sprintf("unsupported startup parameter %q (tenantproxy accepts %s, tenant and options=-c tenant=NAME)",
					name, strings.Join(sortedKeys(startupParameters), ", ")))
			}
			if strings.ContainsAny(value, "'\\\x00") {
				return "", fatal(codeProtocolViolation, fmt.Sprintf("invalid value for parameter %q", name))
			}
			// The guard reads statements as the server will only in encodings where every
			// byte below 0x80 is ASCII; and a temporary schema on the search path would let a
			// client's tables shadow the shared ones.
			if canonical == "client_encoding" && !policy.SafeClientEncoding(value) {
				return "", fatal(codeFeatureNotSupported, fmt.Sprintf("client_encoding %q is not supported: tenantproxy needs an encoding whose bytes below 0x80 are always ASCII (use UTF8)", value))
			}
			if canonical == "search_path" && strings.Contains(strings.ToLower(value), "pg_temp") {
				return "", fatal(codeInsufficientPriv, "search_path may not name a temporary schema")
			}
			settings[canonical] = value
		}
	}
	if tenant != "" && !config.ValidTenant(tenant) {
		return "", fatal(codeInvalidAuthSpec, fmt.Sprintf("tenant %q does not exist", tenant))
	}
	c.params = session.NewSettings(settings)
	c.startupParams = session.NewSettings(settings)
	return tenant, nil
}

func (c *clientConn) reserved(lowerName string) bool {
	for _, p := range c.srv.cfg.Tenancy.ReservedPrefixes {
		if strings.HasPrefix(lowerName, p) {
			return true
		}
	}
	return false
}

// parseOptions accepts exactly the documented tenant choice, in the forms libpq passes on
// from PGOPTIONS: "-c tenant=NAME", "-ctenant=NAME", "--tenant=NAME".
func (c *clientConn) parseOptions(options string) (string, *pgError) {
	fields := splitOptions(options)
	tenant := ""
	for i := 0; i < len(fields); i++ {
		f := fields[i]
		var setting string
		switch {
		case f == "-c" && i+1 < len(fields):
			i++
			setting = fields[i]
		case strings.HasPrefix(f, "-c"):
			setting = f[2:]
		case strings.HasPrefix(f, "--"):
			setting = f[2:]
		default:
			return "", fatal(codeFeatureNotSupported, fmt.Sprintf("unsupported option %q: tenantproxy accepts only -c tenant=NAME in options", f))
		}
		name, value, ok := strings.Cut(setting, "=")
		name = strings.ToLower(strings.ReplaceAll(name, "-", "_"))
		switch {
		case ok && name == "tenant":
			if tenant != "" && value != tenant {
				return "", fatal(codeInvalidAuthSpec, fmt.Sprintf("conflicting tenant choices %q and %q", tenant, value))
			}
			tenant = value
		case c.reserved(name):
			c.srv.metrics.refusals.WithLabelValues("", "startup-reserved").Inc()
			c.log.Warn().Str("option", name).Str("rule", "startup-reserved").Msg("startup options refused")
			return "", fatal(codeInsufficientPriv, fmt.Sprintf("option %q is reserved: the tenant context is set by the proxy", name))
		default:
			return "", fatal(codeFeatureNotSupported, fmt.Sprintf("unsupported option %q: tenantproxy accepts only -c tenant=NAME in options", setting))
		}
	}
	return tenant, nil
}

// splitOptions splits like the server does: on spaces, with backslash escaping the next byte.
func splitOptions(s string) []string {
	var fields []string
	var cur strings.Builder
	escaped, inField := false, false
	for i := 0; i < len(s); i++ {
		ch := s[i]
		switch {
		case escaped:
			cur.WriteByte(ch)
			escaped = false
		case ch == '\\':
			escaped, inField = true, true
		case ch == ' ' || ch == '\t' || ch == '\n' || ch == '\r':
			if inField {
				fields = append(fields, cur.String())
				cur.Reset()
				inField = false
			}
		default:
			cur.WriteByte(ch)
			inField = true
		}
	}
	if inField {
		fields = append(fields, cur.String())
	}
	return fields
}

// authenticate runs SCRAM-SHA-256 (or md5 when allowed and the user has an md5 verifier).
// Unknown users go through the same exchange against a made-up verifier and fail the same way,
// so the answer never tells whether a user exists.
func (c *clientConn) authenticate() error {
	failed := fatal(codeInvalidPassword, fmt.Sprintf("password authentication failed for user %q", c.user))
	u, known := c.srv.users[c.user]
	if known && u.scram == nil {
		if !c.srv.cfg.AllowMD5 {
			return failed
		}
		return c.authenticateMD5(u.md5, failed)
	}
	creds := u.scram
	if !known {
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
		return c.authFailed(failed, err)
	}
	encode(c.out, &pgproto3.AuthenticationSASLContinue{Data: []byte(challenge)})
	body, err = c.readPassword()
	if err != nil {
		return err
	}
	final, err := conv.Step(string(body))
	if err != nil || !known || !conv.Valid() {
		return c.authFailed(failed, err)
	}
	encode(c.out, &pgproto3.AuthenticationSASLFinal{Data: []byte(final)})
	return nil
}

func (c *clientConn) authenticateMD5(verifier string, failed *pgError) error {
	var salt [4]byte
	rand.Read(salt[:])
	encode(c.out, &pgproto3.AuthenticationMD5Password{Salt: salt})
	body, err := c.readPassword()
	if err != nil {
		return err
	}
	sum := md5.Sum(append([]byte(verifier[3:]), salt[:]...))
	want := "md5" + hex.EncodeToString(sum[:])
	got, _, _ := wire.CString(body)
	if subtle.ConstantTimeCompare(got, []byte(want)) != 1 {
		return c.authFailed(failed, errors.New("md5 mismatch"))
	}
	return nil
}

func (c *clientConn) authFailed(failed *pgError, cause error) error {
	c.srv.metrics.authFailures.WithLabelValues("password").Inc()
	c.log.Warn().Err(cause).Msg("authentication failed")
	return failed
}

// readPassword reads the body of the client's next PasswordMessage ('p').
func (c *clientConn) readPassword() ([]byte, error) {
	typ, msg, err := c.in.Next()
	if err != nil {
		if errors.Is(err, wire.ErrTooLarge) || errors.Is(err, wire.ErrMalformed) {
			return nil, fatal(codeProtocolViolation, "invalid authentication message: "+err.Error())
		}
		return nil, err
	}
	if typ != 'p' {
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
