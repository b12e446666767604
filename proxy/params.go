package proxy

import (
	"errors"
	"fmt"
	"slices"
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
	reserved        []string // setting namespaces, lower case, ending with "."
	allowSearchPath bool
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
		case rules.isReserved(lower):
			return req, reservedAtStartup("parameter", name)
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

// takeSetting keeps one setting a client may choose at startup.
func (rules startupRules) takeSetting(req *startupRequest, name, value string) *pgError {
	s, known := guc.Lookup(name)
	if !known || !s.Startup {
		return fatal(codeFeatureNotSupported, fmt.Sprintf("unsupported startup parameter %q (tenantproxy accepts %s, tenant and options=-c tenant=NAME)",
			name, strings.Join(startupSettingNames, ", ")))
	}
	if s.Name == "search_path" && !rules.allowSearchPath {
		return fatal(codeFeatureNotSupported, "search_path may not be set at startup (tenancy.allow_search_path is off)")
	}
	if strings.ContainsAny(value, "'\\\x00") {
		return fatal(codeProtocolViolation, fmt.Sprintf("invalid value for parameter %q", name))
	}
	// The guard reads statements as the server will only in encodings where every byte below
	// 0x80 is ASCII; and a temporary schema on the search path would let a client's tables
	// shadow the shared ones.
	if s.Lexer && !guc.LexerValueSafe(s.Name, value) {
		return fatal(codeFeatureNotSupported, fmt.Sprintf("client_encoding %q is not supported: tenantproxy needs an encoding whose bytes below 0x80 are always ASCII (use UTF8)", value))
	}
	if s.Name == "search_path" && strings.Contains(strings.ToLower(value), "pg_temp") {
		return fatal(codeInsufficientPriv, "search_path may not name a temporary schema")
	}
	req.settings[s.Name] = value
	return nil
}

// startupSettingNames are the settings a client may choose at startup, sorted, for messages.
var startupSettingNames = func() []string {
	names := guc.Names(func(s guc.Setting) bool { return s.Startup })
	for i, n := range names {
		names[i] = guc.Fold(n)
	}
	slices.Sort(names)
	return names
}()

func (rules startupRules) isReserved(lowerName string) bool {
	for _, p := range rules.reserved {
		if strings.HasPrefix(lowerName, p) {
			return true
		}
	}
	return false
}

// readOptions accepts exactly the documented tenant choice, in the forms libpq passes on from
// PGOPTIONS: "-c tenant=NAME", "-ctenant=NAME", "--tenant=NAME".
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
			return fatal(codeFeatureNotSupported, fmt.Sprintf("unsupported option %q: tenantproxy accepts only -c tenant=NAME in options", f))
		}
		name, value, ok := strings.Cut(setting, "=")
		name = guc.Fold(strings.ReplaceAll(name, "-", "_"))
		switch {
		case ok && name == "tenant":
			if err := req.choose(value); err != nil {
				return err
			}
		case rules.isReserved(name):
			return reservedAtStartup("option", name)
		default:
			return fatal(codeFeatureNotSupported, fmt.Sprintf("unsupported option %q: tenantproxy accepts only -c tenant=NAME in options", setting))
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
