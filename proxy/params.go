package proxy

import (
	"errors"
	"fmt"
	"strings"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/internal/guc"
	"github.com/tenantproxy/tenantproxy/internal/wire"
)

// What a client asks for in its startup packet, read without any I/O. The packet never reaches
// the server: the proxy keeps the settings a client may choose and the tenant it asks for, and
// refuses the rest.

// startupRequest is what a client asks for in its startup packet.
type startupRequest struct {
	user, database string
	// tenant is the tenant it chose, "" for none.
	tenant string
	// settings are the settings it chose, by the server's names.
	settings map[string]string
}

// startupRules say what a client may ask for.
type startupRules struct {
	reserved []string // setting namespaces, lower case, ending with "."
}

// ruleStartupReserved names the refusal of a reserved setting at startup in logs and metrics.
const ruleStartupReserved = "startup-reserved"

// parseStartup splits a StartupMessage body (after the protocol version) into parameters.
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

// readStartup keeps the allowed startup parameters as the client's settings and finds the
// tenant it asked for. The reserved namespace, options other than -c tenant=NAME, and replication
// are refused outright.
func (rules startupRules) readStartup(params map[string]string) (startupRequest, *pgError) {
	req := startupRequest{user: params["user"], database: params["database"], settings: map[string]string{}}
	for name, value := range params {
		lower := guc.Fold(name)
		switch {
		case lower == "user" || lower == "database":
		case lower == "tenant":
			if err := req.choose(value); err != nil {
				return req, err
			}
		case lower == "options":
			if err := rules.readOptions(&req, value); err != nil {
				return req, err
			}
		case lower == "replication":
			return req, fatal(codeInsufficientPriv, "replication connections are not accepted by tenantproxy")
		default:
			if err := rules.takeSetting(&req, name, value); err != nil {
				return req, err
			}
		}
	}
	if req.tenant != "" && !config.ValidTenant(req.tenant) {
		return req, fatal(codeInvalidAuthSpec, fmt.Sprintf("tenant %q does not exist", req.tenant))
	}
	return req, nil
}

func reservedAtStartup(what, name string) *pgError {
	e := fatal(codeInsufficientPriv, fmt.Sprintf("%s %q is reserved: the tenant context is set by the proxy", what, name))
	e.rule = ruleStartupReserved
	return e
}

// choose records the tenant the client asks for; asking for two is an error.
func (req *startupRequest) choose(tenant string) *pgError {
	if req.tenant != "" && tenant != req.tenant {
		return fatal(codeInvalidAuthSpec, fmt.Sprintf("conflicting tenant choices %q and %q", req.tenant, tenant))
	}
	req.tenant = tenant
	return nil
}

// takeSetting keeps a setting the client chose at startup. Any setting a client may SET is
// accepted: the server checks the name and the value when the proxy applies it (a setting it
// refuses ends the login with its error). The reserved namespace, identity, and values that would
// make the server read statements differently from the guard are refused here.
func (rules startupRules) takeSetting(req *startupRequest, name, value string) *pgError {
	s, _ := guc.Lookup(name)
	switch {
	case rules.isReserved(guc.Fold(name)):
		return reservedAtStartup("parameter", name)
	case s.Identity || s.ReadOnly:
		return fatal(codeInsufficientPriv, fmt.Sprintf("parameter %q may not be set: the session's identity is fixed by the proxy", name))
	case strings.ContainsRune(name, 0) || name == "":
		return fatal(codeProtocolViolation, "invalid parameter name")
	case s.Lexer && !guc.LexerValueSafe(s.Name, value):
		// The guard reads statements as the server does only in encodings whose bytes below
		// 0x80 are always ASCII, and with standard_conforming_strings on.
		return fatal(codeFeatureNotSupported, fmt.Sprintf("%s %q is not supported: tenantproxy must read statements as the server does (%s)", s.Name, value, lexerStartupHint))
	case s.Name == "search_path" && strings.Contains(strings.ToLower(value), "pg_temp"):
		// A temporary schema on the search path would let a client's tables shadow the shared
		// ones.
		return fatal(codeInsufficientPriv, "search_path may not name a temporary schema")
	}
	if _, dup := req.settings[s.Name]; dup {
		return fatal(codeProtocolViolation, fmt.Sprintf("parameter %q given twice", name))
	}
	req.settings[s.Name] = value
	return nil
}

const lexerStartupHint = "use client_encoding UTF8, or any encoding but SJIS, SHIFT_JIS_2004, BIG5, GBK, UHC, GB18030 and JOHAB; standard_conforming_strings stays on"

func (rules startupRules) isReserved(lowerName string) bool {
	for _, p := range rules.reserved {
		if strings.HasPrefix(lowerName, p) {
			return true
		}
	}
	return false
}

// readOptions reads the command-line switches the server accepts in options (libpq passes
// PGOPTIONS there): "-c name=value", "-cname=value" and "--name=value", names with - or _. The
// tenant choice (-c tenant=NAME) is the proxy's; every other name is a setting.
func (rules startupRules) readOptions(req *startupRequest, options string) *pgError {
	fields := splitOptions(options)
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
			return fatal(codeFeatureNotSupported, fmt.Sprintf("unsupported option %q: tenantproxy accepts settings (-c name=value, --name=value) and -c tenant=NAME in options", f))
		}
		name, value, ok := strings.Cut(setting, "=")
		if !ok {
			return fatal(codeSyntaxError, fmt.Sprintf("option %q needs a value: -c name=value", setting))
		}
		name = strings.ReplaceAll(name, "-", "_")
		if guc.Fold(name) == "tenant" {
			if err := req.choose(value); err != nil {
				return err
			}
			continue
		}
		if rules.isReserved(guc.Fold(name)) {
			return reservedAtStartup("option", guc.Fold(name))
		}
		if err := rules.takeSetting(req, name, value); err != nil {
			return err
		}
	}
	return nil
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
