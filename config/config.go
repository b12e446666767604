// Package config reads tenantproxy's TOML configuration and checks it whole: unknown keys and
// bad values are errors naming the key and its line, so a typo never silently changes behaviour.
package config

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"math"
	"net"
	"os"
	"regexp"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/BurntSushi/toml"
	"github.com/jackc/pgx/v5"

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
	MaxMessageSize ByteSize `toml:"max_message_size"`
	// AuthTimeout bounds the startup and authentication of one client.
	AuthTimeout Duration `toml:"auth_timeout"`
	// ShutdownTimeout is how long a shutdown (SIGTERM) lets transactions in flight finish.
	ShutdownTimeout Duration `toml:"shutdown_timeout"`
	// ClientWriteTimeout ends a client that stops reading its results for that long: its backend
	// is closed rather than pinned for ever.
	ClientWriteTimeout Duration `toml:"client_write_timeout"`
	// AllowMD5 lets users with an md5 verifier authenticate with md5. Off: SCRAM only.
	AllowMD5 bool `toml:"allow_md5"`
	// MetricsListen, when set, serves Prometheus metrics at /metrics, and /healthz and /readyz,
	// on that address; TENANTPROXY_METRICS_LISTEN overrides it.
	MetricsListen string `toml:"metrics_listen"`
	// PeerID names this instance among Peers (1 to 127; 0 without peers): the cancel keys it
	// hands out carry it, so that any peer can forward a cancel request to the one serving
	// the client.
	PeerID int `toml:"peer_id"`
	// Peers are the instances behind the same load balancer, by peer id: "host:port" where
	// each accepts clients. This instance may be listed too.
	Peers map[string]string `toml:"peers"`
	// ReusePort lets several processes listen on the same address (SO_REUSEPORT), the kernel
	// spreading new connections among them: a new version starts beside the old one, which
	// then drains, and no client is refused in between.
	ReusePort bool `toml:"so_reuseport"`
	// Threads is how many OS threads run Go code at once (GOMAXPROCS); 0 keeps Go's default,
	// every CPU (or the GOMAXPROCS environment variable).
	Threads int `toml:"threads"`

	TLS     TLS     `toml:"tls"`
	Backend Backend `toml:"backend"`
	Pool    Pool    `toml:"pool"`
	Tenancy Tenancy `toml:"tenancy"`
	Limits  Limits  `toml:"limits"`
	// Tenants override the per-tenant limits, by tenant name.
	Tenants map[string]Tenant `toml:"tenants"`
	Users   map[string]User   `toml:"users"`
	// Admins may use the admin console (the database "tenantproxy") and nothing else.
	Admins map[string]Admin `toml:"admins"`
	// Directory, when the file has a [directory] section, is where users beyond [users] live.
	Directory *Directory `toml:"directory"`
	Log       Log        `toml:"log"`

	// file is the file the configuration was loaded from, which a reload reads again.
	file string
}

// File is the file Load read the configuration from ("" when it was not loaded from a file).
func (c *Config) File() string { return c.file }

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
	// MaxPreparedStatements and MaxPreparedStatementMemory bound the statements tenantproxy keeps
	// prepared on one backend in transaction mode (count, and bytes of their text); the least
	// recently used are closed beyond them.
	MaxPreparedStatements      int      `toml:"max_prepared_statements"`
	MaxPreparedStatementMemory ByteSize `toml:"max_prepared_statement_memory"`
}

// Limits bound what one client, user or tenant can take of the proxy and the database, and
// what all of them together can hold; [tenants.NAME] overrides the per-tenant ones.
type Limits struct {
	// MaxConnectionsPerTenant and MaxConnectionsPerUser cap client connections (53300 beyond).
	MaxConnectionsPerTenant int `toml:"max_connections_per_tenant"`
	MaxConnectionsPerUser   int `toml:"max_connections_per_user"`
	// LoginRate paces each tenant's logins: at most this many per second on average, a
	// second's worth at once. 0: no pacing.
	LoginRate int `toml:"login_rate"`
	// StatementTimeout bounds each statement of a tenant's clients (57014): it is the session's
	// statement_timeout unless the client chooses one, and the proxy cancels a statement that
	// runs past it whatever the client chose. 0: no limit.
	StatementTimeout Duration `toml:"statement_timeout"`
	// IdleInTransactionTimeout ends a client that keeps a transaction open and idle that long
	// (FATAL 25P03, as PostgreSQL's idle_in_transaction_session_timeout): its transaction is rolled
	// back and its session goes back to the pool. 0: no limit.
	IdleInTransactionTimeout Duration `toml:"idle_in_transaction_timeout"`
	// GuardMemory bounds the memory the SQL guard uses to parse statements at one time; a
	// statement that could not be parsed within it is refused (54000).
	GuardMemory ByteSize `toml:"guard_memory"`
	// MessageMemory bounds the memory every client's messages larger than 64 KiB take at one
	// time (a statement text the guard must read whole, a Bind's values), and a tenant's take
	// half of it at most; a message past either is read past, not held, and refused (53200).
	MessageMemory ByteSize `toml:"message_memory"`
	// ClientStatementMemory bounds the prepared statements one client holds in transaction mode,
	// whose text the proxy keeps to prepare them on whichever backend serves the client.
	ClientStatementMemory ByteSize `toml:"client_prepared_statement_memory"`
	// StatementMemory bounds the prepared statements every client together holds.
	StatementMemory ByteSize `toml:"prepared_statement_memory"`
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
	// AllowExplain lets the user run EXPLAIN, whose estimates and counts come from every
	// tenant's rows: for trusted operators only.
	AllowExplain bool `toml:"allow_explain"`
	// MaxConnections caps the user's client connections; 0: limits.max_connections_per_user.
	MaxConnections int `toml:"max_connections"`
}

// Admin is a user of the admin console.
type Admin struct {
	// Password is a verifier, as a user's.
	Password string `toml:"password"`
}

// AdminDatabase is the database name of the admin console.
const AdminDatabase = "tenantproxy"

// Tenant overrides limits for one tenant ([tenants.NAME]); a zero value keeps the default.
type Tenant struct {
	// Weight is the tenant's weight in the fair share of the pool (default 1): with weight 2 it
	// is entitled to twice the sessions of a tenant of weight 1 when both are busy.
	Weight int `toml:"weight"`
	// MaxConnections caps the tenant's client connections.
	MaxConnections int `toml:"max_connections"`
	// LoginRate replaces the [limits] default.
	LoginRate int `toml:"login_rate"`
	// StatementTimeout and IdleInTransactionTimeout replace the [limits] defaults.
	StatementTimeout         Duration `toml:"statement_timeout"`
	IdleInTransactionTimeout Duration `toml:"idle_in_transaction_timeout"`
}

// Directory is the tenant directory in the database (tenantproxy user add ...), read as the
// directory role. Keys left out take [backend]'s host, port, database, sslmode and
// connect_timeout; the user defaults to tenantproxy_directory. A name in both [users] and the
// directory is the file's user.
type Directory struct {
	Host           string   `toml:"host"`
	Port           int      `toml:"port"`
	Database       string   `toml:"database"`
	User           string   `toml:"user"`
	Password       string   `toml:"password"`
	Passfile       string   `toml:"passfile"`
	SSLMode        string   `toml:"sslmode"`
	ConnectTimeout Duration `toml:"connect_timeout"`
	// Refresh is how often each proxy reads the directory's change log: a change reaches new
	// logins within about this long.
	Refresh Duration `toml:"refresh"`
}

// DefaultDirectoryUser is the role `tenantproxy migrate up` creates to read the directory.
const DefaultDirectoryUser = "tenantproxy_directory"

// DefaultDirectoryRefresh is how often the change log is read when refresh is not set.
const DefaultDirectoryRefresh = 2 * time.Second

// Log is where and how tenantproxy logs.
type Log struct {
	Level  string `toml:"level"`
	Format string `toml:"format"`
}

// DSN is the backend as a libpq keyword/value string, without the password (which stays out of
// anything that might be logged). The usual PG* environment variables and ~/.pgpass fill in
// what is not set.
func (b Backend) DSN() string {
	s := dsn(b.Host, b.Port, b.Database, b.User, b.SSLMode, b.ConnectTimeout, b.Passfile, "tenantproxy")
	if b.SSLRootCert != "" {
		s += " sslrootcert=" + quoteDSN(b.SSLRootCert)
	}
	return s
}

// DSN is the directory's connection, as Backend.DSN is the backend's: without the password.
func (d Directory) DSN() string {
	return dsn(d.Host, d.Port, d.Database, d.User, d.SSLMode, d.ConnectTimeout, d.Passfile, "tenantproxy directory")
}

func dsn(host string, port int, database, user, sslmode string, timeout Duration, passfile, application string) string {
	s := fmt.Sprintf("host=%s port=%d dbname=%s user=%s sslmode=%s connect_timeout=%d application_name=%s",
		quoteDSN(host), port, quoteDSN(database), quoteDSN(user), sslmode, max(1, int(timeout.Seconds())), quoteDSN(application))
	if passfile != "" {
		s += " passfile=" + quoteDSN(passfile)
	}
	return s
}

// ConnConfig is how the proxy connects to the backend, the one place that builds it: the pool's
// sessions use it, and so does the check before serving.
func (b Backend) ConnConfig() (*pgx.ConnConfig, error) {
	c, err := pgx.ParseConfig(b.DSN())
	if err != nil {
		return nil, fmt.Errorf("backend: %w", err)
	}
	if b.Password != "" {
		c.Password = b.Password
	}
	return c, nil
}

func quoteDSN(s string) string {
	return "'" + strings.NewReplacer(`\`, `\\`, `'`, `\'`).Replace(s) + "'"
}

// TenantLimits are the limits in force for one tenant: its [tenants.NAME] overrides over the
// [limits] defaults.
func (c *Config) TenantLimits(tenant string) Tenant {
	t := c.Tenants[tenant]
	t.Weight = max(t.Weight, 1)
	if t.MaxConnections == 0 {
		t.MaxConnections = c.Limits.MaxConnectionsPerTenant
	}
	if t.LoginRate == 0 {
		t.LoginRate = c.Limits.LoginRate
	}
	if t.StatementTimeout.Duration == 0 {
		t.StatementTimeout = c.Limits.StatementTimeout
	}
	if t.IdleInTransactionTimeout.Duration == 0 {
		t.IdleInTransactionTimeout = c.Limits.IdleInTransactionTimeout
	}
	return t
}

// ByteSize reads a size in bytes: 1048576, "512KiB", "16MiB", "1GiB".
type ByteSize int64

// UnmarshalTOML implements toml.Unmarshaler for integers and strings.
func (b *ByteSize) UnmarshalTOML(v any) error {
	switch v := v.(type) {
	case int64:
		*b = ByteSize(v)
		return nil
	case string:
		for _, u := range byteUnits {
			if number, ok := strings.CutSuffix(v, u.suffix); ok {
				n, err := strconv.ParseInt(strings.TrimSpace(number), 10, 64)
				if err != nil || n < 0 || n > math.MaxInt64/u.size {
					break
				}
				*b = ByteSize(n * u.size)
				return nil
			}
		}
	}
	return fmt.Errorf("not a size (use e.g. 1048576, \"512KiB\", \"16MiB\", \"1GiB\"): %v", v)
}

var byteUnits = []struct {
	suffix string
	size   int64
}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"TiB", 1 << 40}, {"B", 1}, {"", 1}}

// MarshalText implements encoding.TextMarshaler: the largest unit that divides the size.
func (b ByteSize) MarshalText() ([]byte, error) {
	for i := 3; i >= 0; i-- {
		if u := byteUnits[i]; b != 0 && int64(b)%u.size == 0 {
			return []byte(strconv.FormatInt(int64(b)/u.size, 10) + u.suffix), nil
		}
	}
	return []byte(strconv.FormatInt(int64(b), 10)), nil
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
		Listen:             "0.0.0.0:5432",
		Database:           "app",
		MaxClients:         10000,
		MaxMessageSize:     64 << 20,
		AuthTimeout:        Duration{10 * time.Second},
		ShutdownTimeout:    Duration{30 * time.Second},
		ClientWriteTimeout: Duration{30 * time.Second},
		TLS:                TLS{Mode: "disable"},
		Backend: Backend{
			Host: "127.0.0.1", Port: 5432, Database: "postgres", User: "tenantproxy_app",
			SSLMode: "prefer", ConnectTimeout: Duration{5 * time.Second},
		},
		Pool: Pool{
			Mode: "transaction", Size: 20, MinIdle: 0,
			MaxLifetime: Duration{time.Hour}, IdleTimeout: Duration{10 * time.Minute},
			CheckoutTimeout: Duration{5 * time.Second}, MaxPreparedStatements: 1000,
			MaxPreparedStatementMemory: 64 << 20,
		},
		Limits: Limits{
			MaxConnectionsPerTenant: 1000, MaxConnectionsPerUser: 1000, LoginRate: 100,
			GuardMemory: 512 << 20, MessageMemory: 1 << 30, ClientStatementMemory: 16 << 20, StatementMemory: 1 << 30,
		},
		Tenancy: Tenancy{Setting: "app.current_tenant_id", ReservedPrefixes: []string{"app."}, Schemas: []string{"llmspell"}},
		Log:     Log{Level: "info", Format: "json"},
	}
}

// Load reads path over the defaults, applies TENANTPROXY_LISTEN and TENANTPROXY_METRICS_LISTEN,
// and validates the result.
func Load(path string) (*Config, error) {
	data, err := os.ReadFile(path)
	if err != nil {
		return nil, err
	}
	cfg, err := Parse(path, data)
	if err != nil {
		return nil, err
	}
	cfg.file = path
	return cfg, nil
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
	if v := os.Getenv("TENANTPROXY_METRICS_LISTEN"); v != "" {
		cfg.MetricsListen = v
	}
	cfg.Directory.inherit(cfg.Backend)
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

// inherit fills the keys a [directory] section left out from [backend] and the defaults.
func (d *Directory) inherit(b Backend) {
	if d == nil {
		return
	}
	if d.Host == "" {
		d.Host = b.Host
	}
	if d.Port == 0 {
		d.Port = b.Port
	}
	if d.Database == "" {
		d.Database = b.Database
	}
	if d.User == "" {
		d.User = DefaultDirectoryUser
	}
	if d.SSLMode == "" {
		d.SSLMode = b.SSLMode
	}
	if d.ConnectTimeout.Duration == 0 {
		d.ConnectTimeout = b.ConnectTimeout
	}
	if d.Refresh.Duration == 0 {
		d.Refresh.Duration = DefaultDirectoryRefresh
	}
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

// UserNameRule says which user names are valid, for messages.
const UserNameRule = "letters, digits and _ . @ - (at most 63, not starting with . @ or -)"

// ValidUser reports whether name can be a user of the proxy (in [users] or the directory).
func ValidUser(name string) bool { return userName.MatchString(name) }

func (c *Config) validate(name string, data []byte) error {
	var errs []string
	bad := func(key string, format string, args ...any) {
		errs = append(errs, fmt.Sprintf("%s: %s: %s", at(name, data, splitKey(key)), key, fmt.Sprintf(format, args...)))
	}

	if c.Listen == "" {
		bad("listen", "must be host:port")
	}
	if c.Database == "" || c.Database == AdminDatabase {
		bad("database", "must be set, and not %q (the admin console's)", AdminDatabase)
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
	if c.ShutdownTimeout.Duration <= 0 {
		bad("shutdown_timeout", "must be positive")
	}
	if c.ClientWriteTimeout.Duration <= 0 {
		bad("client_write_timeout", "must be positive")
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
	if p.MaxPreparedStatementMemory < 1<<20 {
		bad("pool.max_prepared_statement_memory", "must be at least 1MiB")
	}
	l := c.Limits
	if l.MaxConnectionsPerTenant < 1 || l.MaxConnectionsPerUser < 1 {
		bad("limits", "max_connections_per_tenant and max_connections_per_user must be at least 1")
	}
	if l.StatementTimeout.Duration < 0 || l.IdleInTransactionTimeout.Duration < 0 {
		bad("limits", "statement_timeout and idle_in_transaction_timeout must be 0 (none) or positive")
	}
	if l.LoginRate < 0 {
		bad("limits.login_rate", "must be 0 (no pacing) or positive")
	}
	for name, tl := range c.Tenants {
		key := "tenants." + name
		if !ValidTenant(name) {
			bad(key, "tenant names use %s", TenantNameRule)
		}
		if tl.Weight < 0 || tl.Weight > 1000 || tl.MaxConnections < 0 || tl.LoginRate < 0 || tl.StatementTimeout.Duration < 0 || tl.IdleInTransactionTimeout.Duration < 0 {
			bad(key, "weight must be 0 to 1000; max_connections, login_rate and the timeouts 0 (default) or more")
		}
	}
	if l.GuardMemory < 1<<20 {
		bad("limits.guard_memory", "must be at least 1MiB")
	}
	if l.MessageMemory < 2*c.MaxMessageSize {
		bad("limits.message_memory", "must be at least twice max_message_size (%d bytes): a tenant may take half of it", c.MaxMessageSize)
	}
	if l.ClientStatementMemory < 1<<16 || l.StatementMemory < l.ClientStatementMemory {
		bad("limits", "client_prepared_statement_memory must be at least 64KiB, and prepared_statement_memory at least that")
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
	if len(t.Tenants) == 0 && c.Directory == nil {
		bad("tenancy.tenants", "must list at least one tenant (or add a [directory], whose users name their own)")
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

	if len(c.Users) == 0 && c.Directory == nil {
		bad("users", "define at least one [users.NAME], or a [directory] to keep users in the database")
	}
	for user, u := range c.Users {
		key := "users." + user
		if u.MaxConnections < 0 {
			bad(key+".max_connections", "must be 0 (the default) or more")
		}
		if !ValidUser(user) {
			bad(key, "user names use %s", UserNameRule)
		}
		if err := c.validVerifier(user, u.Password); err != "" {
			bad(key+".password", "%s", err)
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

	for admin, a := range c.Admins {
		key := "admins." + admin
		if !ValidUser(admin) {
			bad(key, "user names use %s", UserNameRule)
		}
		if _, isUser := c.Users[admin]; isUser {
			bad(key, "is also in [users]: an admin reaches the console only, never tenant data")
		}
		if err := c.validVerifier(admin, a.Password); err != "" {
			bad(key+".password", "%s", err)
		}
	}
	c.validatePeers(bad)

	if d := c.Directory; d != nil {
		c.validateDirectory(d, bad)
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

// validVerifier says what is wrong with a user's password verifier, or "".
func (c *Config) validVerifier(user, verifier string) string {
	switch {
	case strings.HasPrefix(verifier, "SCRAM-SHA-256$"):
		if _, err := scramsecret.Parse(verifier); err != nil {
			return err.Error()
		}
	case strings.HasPrefix(verifier, "md5") && len(verifier) == 35:
		if !c.AllowMD5 {
			return fmt.Sprintf("an md5 verifier needs allow_md5 = true (prefer SCRAM: tenantproxy passwd %s)", user)
		}
	default:
		return fmt.Sprintf("must be a verifier: run tenantproxy passwd %s", user)
	}
	return ""
}

// MaxPeerID is the largest peer id: the cancel key's process id keeps 7 bits for it.
const MaxPeerID = 127

func (c *Config) validatePeers(bad func(key, format string, args ...any)) {
	if len(c.Peers) == 0 {
		if c.PeerID != 0 {
			bad("peer_id", "needs a [peers] section listing the instances")
		}
		return
	}
	if c.PeerID < 1 || c.PeerID > MaxPeerID {
		bad("peer_id", "must be 1 to %d when [peers] is set", MaxPeerID)
	}
	for id, addr := range c.Peers {
		n, err := strconv.Atoi(id)
		if err != nil || n < 1 || n > MaxPeerID || strconv.Itoa(n) != id {
			bad("peers", "%q: peer ids are 1 to %d", id, MaxPeerID)
		}
		if _, _, err := net.SplitHostPort(addr); err != nil {
			bad("peers", "%s = %q: not host:port", id, addr)
		}
	}
}

// PeerAddress is where the peer with the given id accepts clients, and whether there is one.
func (c *Config) PeerAddress(id int) (string, bool) {
	addr, ok := c.Peers[strconv.Itoa(id)]
	return addr, ok
}

func (c *Config) validateDirectory(d *Directory, bad func(key, format string, args ...any)) {
	if d.Port < 1 || d.Port > 65535 {
		bad("directory.port", "must be a TCP port")
	}
	if d.User == c.Backend.User {
		bad("directory.user", "%q is the backend role, which must not read the directory: use its own role (%s)",
			d.User, DefaultDirectoryUser)
	}
	if d.Password != "" && d.Passfile != "" {
		bad("directory.passfile", "give password or passfile, not both")
	}
	if !slices.Contains([]string{"disable", "allow", "prefer", "require", "verify-ca", "verify-full"}, d.SSLMode) {
		bad("directory.sslmode", "must be one of disable, allow, prefer, require, verify-ca, verify-full")
	}
	if d.ConnectTimeout.Duration <= 0 {
		bad("directory.connect_timeout", "must be positive")
	}
	if d.Refresh.Duration < 100*time.Millisecond || d.Refresh.Duration > time.Minute {
		bad("directory.refresh", "must be between 100ms and 1m: a change reaches new logins within about this long")
	}
}
