// Package config reads tenantproxy's TOML configuration and checks it whole: unknown keys and
// bad values are errors naming the key and its line, so a typo never silently changes behaviour.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"os"
	"regexp"
	"slices"
	"strings"
	"time"

	"github.com/BurntSushi/toml"

	"github.com/tenantproxy/tenantproxy/internal/scramsecret"
)

// Config is the whole file.
type Config struct {
	// Listen is the address clients connect to; TENANTPROXY_LISTEN overrides it.
	Listen string `toml:"listen"`
	// Database is the database name clients must ask for.
	Database string `toml:"database"`
	// MaxClients caps client connections; more are refused with 53300.
	MaxClients int `toml:"max_client_connections"`
	// MaxMessageSize is the largest client message accepted, in bytes (COPY data streams freely).
	MaxMessageSize int `toml:"max_message_size"`
	// AuthTimeout bounds the startup and authentication of one client.
	AuthTimeout Duration `toml:"auth_timeout"`
	// AllowMD5 lets users with an md5 verifier authenticate with md5. Off: SCRAM only.
	AllowMD5 bool `toml:"allow_md5"`
	// MetricsListen, when set, serves Prometheus metrics at /metrics on that address.
	MetricsListen string `toml:"metrics_listen"`
	// Threads is how many OS threads run Go code at once (GOMAXPROCS); 0 keeps Go's default,
	// every CPU (or the GOMAXPROCS environment variable).
	Threads int `toml:"threads"`

	TLS     TLS             `toml:"tls"`
	Backend Backend         `toml:"backend"`
	Pool    Pool            `toml:"pool"`
	Tenancy Tenancy         `toml:"tenancy"`
	Users   map[string]User `toml:"users"`
	Log     Log             `toml:"log"`
}

// TLS is the clients' side of TLS.
type TLS struct {
	Cert string `toml:"cert"`
	Key  string `toml:"key"`
	// Mode is "disable", "allow" (TLS when the client asks) or "require".
	Mode string `toml:"mode"`
}

// Backend is the PostgreSQL server and the role tenantproxy's sessions use.
type Backend struct {
	Host     string `toml:"host"`
	Port     int    `toml:"port"`
	Database string `toml:"database"`
	User     string `toml:"user"`
	Password string `toml:"password"`
	Passfile string `toml:"passfile"`
	SSLMode  string `toml:"sslmode"`
	// SSLRootCert is a PEM file of the CAs that may sign the server's certificate (libpq's
	// sslrootcert), for verify-ca and verify-full.
	SSLRootCert    string   `toml:"sslrootcert"`
	ConnectTimeout Duration `toml:"connect_timeout"`
}

// Pool shapes the backend sessions.
type Pool struct {
	// Mode is "transaction" (a backend per transaction) or "session" (per client connection).
	Mode            string   `toml:"mode"`
	Size            int      `toml:"size"`
	MinIdle         int      `toml:"min_idle"`
	MaxLifetime     Duration `toml:"max_lifetime"`
	IdleTimeout     Duration `toml:"idle_timeout"`
	CheckoutTimeout Duration `toml:"checkout_timeout"`
	// MaxPreparedStatements bounds the statements tenantproxy keeps prepared on one backend
	// in transaction mode; the least recently used are closed beyond it.
	MaxPreparedStatements int `toml:"max_prepared_statements"`
}

// Tenancy says what a tenant is and where its context lives.
type Tenancy struct {
	// Setting is the session setting row-level security reads.
	Setting string `toml:"setting"`
	// ReservedPrefixes are setting namespaces no client may set, reset or read through
	// set_config; Setting must be inside one.
	ReservedPrefixes []string `toml:"reserved_prefixes"`
	// Tenants is every tenant name a user may be mapped to.
	Tenants []string `toml:"tenants"`
	// Schemas hold the tenant tables: the check before serving requires each of their tables
	// to be under forced row-level security with a tenant policy per command.
	Schemas []string `toml:"schemas"`
	// AllowSearchPath lets clients choose search_path in the startup packet.
	AllowSearchPath bool `toml:"allow_search_path"`
}

// User is one client identity.
type User struct {
	// Password is a verifier: SCRAM-SHA-256$... (tenantproxy passwd), or md5... with allow_md5.
	Password string `toml:"password"`
	// Tenant is the user's only tenant. Set it, or Tenants.
	Tenant string `toml:"tenant"`
	// Tenants lets the client pick one with the "tenant" startup parameter or -c tenant=NAME.
	Tenants []string `toml:"tenants"`
	// DefaultTenant is used when a user with Tenants picks none.
	DefaultTenant string `toml:"default_tenant"`
}

// Log is where and how tenantproxy logs.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// DSN is the backend as a libpq keyword/value string, without the password (which stays out of
// anything that might be logged). The usual PG* environment variables and ~/.pgpass fill in
// what is not set.
func (b Backend) DSN() string {
	dsn := fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=%s connect_timeout=%d application_name=tenantproxy",
		quoteDSN(b.Host), b.Port, quoteDSN(b.Database), quoteDSN(b.User), b.SSLMode, max(1, int(b.ConnectTimeout.Seconds())))
	if b.Passfile != "" {
		dsn += " passfile=" + quoteDSN(b.Passfile)
	}
	if b.SSLRootCert != "" {
		dsn += " sslrootcert=" + quoteDSN(b.SSLRootCert)
	}
	return dsn
}

func quoteDSN(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// Duration reads "5s", "10m", "1h".
type Duration struct{ time.Duration }

// UnmarshalText implements encoding.TextUnmarshaler.
func (d *Duration) UnmarshalText(b []byte) error {
	v, err := time.ParseDuration(string(b))
	if err != nil {
		return fmt.Errorf("not a duration (use e.g. \"5s\", \"10m\"): %q", b)
	}
	d.Duration = v
	return nil
}

// MarshalText implements encoding.TextMarshaler.
func (d Duration) MarshalText() ([]byte, error) { return []byte(d.String()), nil }

// Defaults is the configuration an empty file gives.
func Defaults() Config {
	return Config{
		Listen:         "0.0.0.0:5432",
		Database:       "app",
		MaxClients:     10000,
		MaxMessageSize: 64 << 20,
		AuthTimeout:    Duration{10 * time.Second},
		TLS:            TLS{Mode: "disable"},
		Backend: Backend{
			Host: "127.0.0.1", Port: 5432, Database: "postgres", User: "tenantproxy_app",
			SSLMode: "prefer", ConnectTimeout: Duration{5 * time.Second},
		},
		Pool: Pool{
			Mode: "transaction", Size: 20, MinIdle: 0,
			MaxLifetime: Duration{time.Hour}, IdleTimeout: Duration{10 * time.Minute},
			CheckoutTimeout: Duration{5 * time.Second}, MaxPreparedStatements: 1000,
		},
		Tenancy: Tenancy{Setting: "app.current_tenant_id", ReservedPrefixes: []string{"app."}, Schemas: []string{"llmspell"}},
		Log:     Log{Level: "info", Format: "json"},
	}
}

// Load reads path over the defaults, applies TENANTPROXY_LISTEN, and validates the result.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	return Parse(path, data)
}

// Parse is Load for a file already read; name is used in errors.
func Parse(name string, data []byte) (*Config, error) {
	cfg := Defaults()
	md, err := toml.NewDecoder(bytes.NewReader(data)).Decode(&cfg)
	if err != nil {
		var perr toml.ParseError
		if errors.As(err, &perr) {
			return nil, fmt.Errorf("%s:%d: %s: %s", name, perr.Position.Line, perr.LastKey, perr.Message)
		}
		if m := typeError.FindStringSubmatch(err.Error()); m != nil {
			return nil, fmt.Errorf("%s:%s: %s: %s", name, m[1], m[2], m[3])
		}
		return nil, fmt.Errorf("%s: %w", name, err)
	}
	if undecoded := md.Undecoded(); len(undecoded) > 0 {
		var msgs []string
		for _, k := range undecoded {
			msgs = append(msgs, fmt.Sprintf("%s: unknown key %q", at(name, data, k), k.String()))
		}
		return nil, errors.New(strings.Join(msgs, "\n"))
	}
	if v := os.Getenv("TENANTPROXY_LISTEN"); v != "" {
		cfg.Listen = v
	}
	if err := cfg.validate(name, data); err != nil {
		return nil, err
	}
	return &cfg, nil
}

// at is "file:line" for key, or just "file" when the line cannot be found.
func at(name string, data []byte, key toml.Key) string {
	if line := lineOf(data, key); line > 0 {
		return fmt.Sprintf("%s:%d", name, line)
	}
	return name
}

// lineOf finds the line that sets key, following [table] headers. It understands the layouts
// this file documents (tables and "name = value"), which is what error messages need.
func lineOf(data []byte, key toml.Key) int {
	if len(key) == 0 {
		return 0
	}
	table, leaf := key[:len(key)-1], key[len(key)-1]
	var current []string
	sc := bufio.NewScanner(bytes.NewReader(data))
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if strings.HasPrefix(line, "[") && !strings.HasPrefix(line, "[[") {
			current = splitKey(strings.Trim(line, "[] "))
			if slices.Equal(current, key) {
				return n
			}
			continue
		}
		name, _, ok := strings.Cut(line, "=")
		if !ok {
			continue
		}
		full := append(slices.Clone(current), splitKey(strings.TrimSpace(name))...)
		if slices.Equal(full, append(slices.Clone(table), leaf)) {
			return n
		}
	}
	return 0
}

func splitKey(s string) []string {
	parts := strings.Split(s, ".")
	for i, p := range parts {
		parts[i] = strings.Trim(strings.TrimSpace(p), `"'`)
	}
	return parts
}

var (
	typeError   = regexp.MustCompile(`^toml: line (\d+) \(last key "(.*?)"\): (.*)$`)
	tenantName  = regexp.MustCompile(`^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,62}$`)
	userName    = regexp.MustCompile(`^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,62}$`)
	settingName = regexp.MustCompile(`^[a-z_][a-z0-9_]*\.[a-z_][a-z0-9_]*$`)
)

// TenantNameRule says which tenant names are valid, for messages.
const TenantNameRule = "letters, digits and _ . @ : - (at most 63, starting with a letter or digit)"

// ValidTenant reports whether name can be a tenant: it is quoted into a SET statement, so the
// rule keeps out quotes, backslashes and anything a client encoding could reinterpret.
func ValidTenant(name string) bool { return tenantName.MatchString(name) }

func (c *Config) validate(name string, data []byte) error {
	var errs []string
	bad := func(key string, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s: %s: %s", at(name, data, splitKey(key)), key, fmt.Sprintf(format, args...)))
	}

	if c.Listen == "" {
		bad("listen", "must be host:port")
	}
	if c.Database == "" {
		bad("database", "must be set")
	}
	if c.Threads < 0 {
		bad("threads", "must be 0 (automatic) or more")
	}
	if c.MaxClients < 1 {
		bad("max_client_connections", "must be at least 1")
	}
	if c.MaxMessageSize < 1024 || c.MaxMessageSize > 1<<30 {
		bad("max_message_size", "must be between 1024 and 1073741824 bytes")
	}
	if c.AuthTimeout.Duration <= 0 {
		bad("auth_timeout", "must be positive")
	}

	switch c.TLS.Mode {
	case "disable":
	case "allow", "require":
		if c.TLS.Cert == "" || c.TLS.Key == "" {
			bad("tls.mode", "%q needs tls.cert and tls.key", c.TLS.Mode)
		}
	default:
		bad("tls.mode", "must be disable, allow or require, not %q", c.TLS.Mode)
	}

	b := c.Backend
	if b.Host == "" {
		bad("backend.host", "must be set")
	}
	if b.Port < 1 || b.Port > 65535 {
		bad("backend.port", "must be a TCP port")
	}
	if b.Database == "" || b.User == "" {
		bad("backend", "database and user must be set")
	}
	if b.Password != "" && b.Passfile != "" {
		bad("backend.passfile", "give password or passfile, not both")
	}
	if !slices.Contains([]string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}, b.SSLMode) {
		bad("backend.sslmode", "must be one of disable, allow, prefer, require, verify-ca, verify-full")
	}
	if b.SSLRootCert != "" && b.SSLMode == "disable" {
		bad("backend.sslrootcert", "has no effect with sslmode disable (use verify-full to check the server's certificate)")
	}
	if b.ConnectTimeout.Duration <= 0 {
		bad("backend.connect_timeout", "must be positive")
	}

	p := c.Pool
	if p.Mode != "transaction" && p.Mode != "session" {
		bad("pool.mode", "must be transaction or session, not %q", p.Mode)
	}
	if p.Size < 1 {
		bad("pool.size", "must be at least 1")
	}
	if p.MinIdle < 0 || p.MinIdle > p.Size {
		bad("pool.min_idle", "must be between 0 and pool.size")
	}
	if p.MaxLifetime.Duration <= 0 || p.IdleTimeout.Duration <= 0 || p.CheckoutTimeout.Duration <= 0 {
		bad("pool", "max_lifetime, idle_timeout and checkout_timeout must be positive")
	}
	if p.MaxPreparedStatements < 1 {
		bad("pool.max_prepared_statements", "must be at least 1")
	}

	t := c.Tenancy
	if !settingName.MatchString(t.Setting) {
		bad("tenancy.setting", "%q is not of the form prefix.name in lower case", t.Setting)
	}
	if len(t.ReservedPrefixes) == 0 {
		bad("tenancy.reserved_prefixes", "must name at least the namespace of tenancy.setting")
	}
	inside := false
	for i, prefix := range t.ReservedPrefixes {
		if !strings.HasSuffix(prefix, ".") || prefix != strings.ToLower(prefix) || len(prefix) < 2 {
			bad("tenancy.reserved_prefixes", "%q must be lower case and end with a dot", prefix)
		}
		t.ReservedPrefixes[i] = strings.ToLower(prefix)
		if strings.HasPrefix(t.Setting, prefix) {
			inside = true
		}
	}
	if !inside {
		bad("tenancy.reserved_prefixes", "must include the namespace of %q, or clients could change it", t.Setting)
	}
	if len(t.Tenants) == 0 {
		bad("tenancy.tenants", "must list at least one tenant")
	}
	if len(t.Schemas) == 0 {
		bad("tenancy.schemas", "must name the schemas that hold the tenant tables")
	}
	seen := map[string]bool{}
	for _, tenant := range t.Tenants {
		if !ValidTenant(tenant) {
			bad("tenancy.tenants", "%q: tenant names use %s", tenant, TenantNameRule)
		}
		if seen[tenant] {
			bad("tenancy.tenants", "%q is listed twice", tenant)
		}
		seen[tenant] = true
	}

	if len(c.Users) == 0 {
		bad("users", "define at least one [users.NAME]")
	}
	for user, u := range c.Users {
		key := "users." + user
		if !userName.MatchString(user) {
			bad(key, "user names use letters, digits and _ . @ -")
		}
		switch {
		case strings.HasPrefix(u.Password, "SCRAM-SHA-256$"):
			if _, err := scramsecret.Parse(u.Password); err != nil {
				bad(key+".password", "%v", err)
			}
		case strings.HasPrefix(u.Password, "md5") && len(u.Password) == 35:
			if !c.AllowMD5 {
				bad(key+".password", "an md5 verifier needs allow_md5 = true (prefer SCRAM: tenantproxy passwd %s)", user)
			}
		default:
			bad(key+".password", "must be a verifier: run tenantproxy passwd %s", user)
		}
		switch {
		case u.Tenant != "" && len(u.Tenants) > 0:
			bad(key, "give tenant or tenants, not both")
		case u.Tenant != "":
			if !seen[u.Tenant] {
				bad(key+".tenant", "%q is not in tenancy.tenants", u.Tenant)
			}
			if u.DefaultTenant != "" {
				bad(key+".default_tenant", "only for users with tenants")
			}
		case len(u.Tenants) > 0:
			for _, tenant := range u.Tenants {
				if !seen[tenant] {
					bad(key+".tenants", "%q is not in tenancy.tenants", tenant)
				}
			}
			if u.DefaultTenant != "" && !slices.Contains(u.Tenants, u.DefaultTenant) {
				bad(key+".default_tenant", "%q is not one of the user's tenants", u.DefaultTenant)
			}
		default:
			bad(key, "needs tenant or tenants")
		}
	}

	if !slices.Contains([]string{"debug", "info", "warn", "error"}, c.Log.Level) {
		bad("log.level", "must be debug, info, warn or error")
	}
	if c.Log.Format != "json" && c.Log.Format != "console" {
		bad("log.format", "must be json or console")
	}

	if len(errs) > 0 {
		slices.Sort(errs)
		return errors.New(strings.Join(errs, "\n"))
	}
	return nil
}
