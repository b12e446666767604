package config

import (
	"os"
	"strings"
	"testing"
	"time"
)

func TestExampleConfigLoads(t *testing.T) {
	t.Setenv("TENANTPROXY_LISTEN", "")
	cfg, err := Load("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:5432" || cfg.Database != "app" || cfg.Pool.Mode != "transaction" {
		t.Errorf("unexpected values: %+v", cfg)
	}
	if cfg.Users["carol"].DefaultTenant != "acme" || cfg.Users["alice"].Tenant != "acme" {
		t.Errorf("users: %+v", cfg.Users)
	}
	if cfg.Pool.CheckoutTimeout.Duration != 5*time.Second {
		t.Errorf("checkout_timeout = %v", cfg.Pool.CheckoutTimeout)
	}
}

func TestListenFromEnvironment(t *testing.T) {
	t.Setenv("TENANTPROXY_LISTEN", "127.0.0.1:6543")
	cfg, err := Load("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Listen != "127.0.0.1:6543" {
		t.Errorf("listen = %s", cfg.Listen)
	}
}

const minimal = `
[tenancy]
tenants = ["acme"]

[users.alice]
password = "SCRAM-SHA-256$4096:i9sg0HmS8QFyG9N5zPvL+Q==$bpDZK46QFJQx4zB8ajtXWQfYcUFEJxsj+C3sV9gijvg=:5HnCv8y4QVmGOoJz/D6hb6g6bwnOjhxz/AN0xd2LHeg="
tenant = "acme"
`

func TestDefaults(t *testing.T) {
	t.Setenv("TENANTPROXY_LISTEN", "")
	cfg, err := Parse("minimal.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	d := Defaults()
	if cfg.Listen != "0.0.0.0:5432" || cfg.Pool.Size != d.Pool.Size || cfg.Tenancy.Setting != "app.current_tenant_id" {
		t.Errorf("defaults not applied: %+v", cfg)
	}
}

// Each bad file must fail, naming the key and the line.
func TestErrorsNameKeyAndLine(t *testing.T) {
	t.Setenv("TENANTPROXY_LISTEN", "")
	cases := []struct {
		name, file, want string
	}{
		{"unknown top-level key", "listn = \"x\"\n" + minimal, `bad.toml:1: unknown key "listn"`},
		{"unknown key in a table", minimal + "\n[pool]\nsize = 3\nmod = \"session\"\n", `bad.toml:11: unknown key "pool.mod"`},
		{"bad pool mode", minimal + "\n[pool]\nmode = \"statement\"\n", `bad.toml:10: pool.mode: must be transaction or session`},
		{"bad duration", "auth_timeout = \"soon\"\n" + minimal, `bad.toml:1`},
		{"wrong type", "max_client_connections = \"many\"\n" + minimal, `bad.toml:1`},
		{"tenant not listed", strings.Replace(minimal, `tenant = "acme"`, `tenant = "globex"`, 1), `users.alice.tenant: "globex" is not in tenancy.tenants`},
		{"plaintext password", strings.Replace(minimal, `password = "SCRAM`, `password = "hunter2" #`, 1), `tenantproxy passwd alice`},
		{"reserved prefix missing the setting", "[tenancy]\nreserved_prefixes = [\"other.\"]\ntenants = [\"acme\"]\n" + minimal[strings.Index(minimal, "[users"):], `must include the namespace`},
		{"bad tenant name", strings.Replace(minimal, `tenants = ["acme"]`, `tenants = ["acme", "o'brien"]`, 1), `tenant names use`},
		{"tls without cert", "[tls]\nmode = \"require\"\n" + minimal, `bad.toml:2: tls.mode: "require" needs tls.cert and tls.key`},
		{"min idle above size", minimal + "\n[pool]\nsize = 2\nmin_idle = 3\n", `pool.min_idle: must be between 0 and pool.size`},
		{"both tenant and tenants", minimal + "tenants = [\"acme\"]\n", `users.alice: give tenant or tenants, not both`},
		{"md5 without allow_md5", strings.Replace(minimal, `password = "SCRAM-SHA-256$4096:i9sg0HmS8QFyG9N5zPvL+Q==$bpDZK46QFJQx4zB8ajtXWQfYcUFEJxsj+C3sV9gijvg=:5HnCv8y4QVmGOoJz/D6hb6g6bwnOjhxz/AN0xd2LHeg="`, `password = "md5a3556571e93b0d20722ba62be61e8c2d"`, 1), `needs allow_md5 = true`},
		{"syntax error", "listen = \n" + minimal, `bad.toml:1`},
		{"no users and no directory", "[tenancy]\ntenants = [\"acme\"]\n", `users: define at least one [users.NAME], or a [directory]`},
		{"no tenants and no directory", minimal[strings.Index(minimal, "[users"):], `tenancy.tenants: must list at least one tenant (or add a [directory]`},
		{"directory as the backend role", minimal + "\n[directory]\nuser = \"tenantproxy_app\"\n", `bad.toml:10: directory.user: "tenantproxy_app" is the backend role`},
		{"directory refresh too short", minimal + "\n[directory]\nrefresh = \"10ms\"\n", `bad.toml:10: directory.refresh: must be between 100ms and 1m`},
		{"directory password and passfile", minimal + "\n[directory]\npassword = \"x\"\npassfile = \"/p\"\n", `directory.passfile: give password or passfile, not both`},
		{"directory bad sslmode", minimal + "\n[directory]\nsslmode = \"maybe\"\n", `directory.sslmode: must be one of`},
		{"directory unknown key", minimal + "\n[directory]\nurl = \"postgres://x\"\n", `bad.toml:10: unknown key "directory.url"`},
		{"negative login rate", minimal + "\n[limits]\nlogin_rate = -1\n", `bad.toml:10: limits.login_rate: must be 0 (no pacing) or positive`},
		{"negative tenant login rate", minimal + "\n[tenants.acme]\nlogin_rate = -5\n", `tenants.acme: weight must be 0 to 1000; max_connections, login_rate`},
		{"root certificate without TLS", minimal + "\n[backend]\nsslmode = \"disable\"\nsslrootcert = \"/etc/ca.pem\"\n", `bad.toml:11: backend.sslrootcert: has no effect with sslmode disable`},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			_, err := Parse("bad.toml", []byte(c.file))
			if err == nil {
				t.Fatalf("accepted:\n%s", c.file)
			}
			if !strings.Contains(err.Error(), c.want) {
				t.Errorf("error %q does not contain %q", err, c.want)
			}
		})
	}
}

func TestDirectoryIsOnlyOnWithItsSection(t *testing.T) {
	cfg, err := Parse("minimal.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Directory != nil {
		t.Errorf("directory on without a [directory] section: %+v", cfg.Directory)
	}
	cfg, err = Parse("empty-section.toml", []byte(minimal+"\n[directory]\n"))
	if err != nil {
		t.Fatal(err)
	}
	if cfg.Directory == nil || cfg.Directory.User != DefaultDirectoryUser {
		t.Errorf("an empty [directory] section: %+v", cfg.Directory)
	}
}

// A [directory] section alone is a whole configuration: users and tenants come from the database.
// What it leaves out comes from [backend] and the defaults.
func TestDirectoryInheritsTheBackend(t *testing.T) {
	file := `
[backend]
host = "db.internal"
port = 6432
database = "tenants"
sslmode = "require"
connect_timeout = "3s"

[directory]
password = "s3cret"
`
	cfg, err := Parse("directory.toml", []byte(file))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Directory
	if d == nil {
		t.Fatal("no directory")
	}
	want := Directory{Host: "db.internal", Port: 6432, Database: "tenants", User: DefaultDirectoryUser, Password: "s3cret",
		SSLMode: "require", ConnectTimeout: Duration{3 * time.Second}, Refresh: Duration{DefaultDirectoryRefresh}}
	if *d != want {
		t.Errorf("directory = %+v\nwant        %+v", *d, want)
	}
	dsn := d.DSN()
	for _, part := range []string{"host='db.internal'", "port=6432", "dbname='tenants'", "user='tenantproxy_directory'", "sslmode=require", "connect_timeout=3"} {
		if !strings.Contains(dsn, part) {
			t.Errorf("DSN %q lacks %q", dsn, part)
		}
	}
	if strings.Contains(dsn, "s3cret") {
		t.Errorf("DSN %q holds the password", dsn)
	}
}

func TestDirectoryKeysOverride(t *testing.T) {
	cfg, err := Parse("directory.toml", []byte(minimal+`
[directory]
host = "/run/postgresql"
port = 5433
database = "users"
user = "reader"
passfile = "/etc/tenantproxy/pgpass"
sslmode = "disable"
refresh = "500ms"
`))
	if err != nil {
		t.Fatal(err)
	}
	d := cfg.Directory
	if d.Host != "/run/postgresql" || d.Port != 5433 || d.Database != "users" || d.User != "reader" ||
		d.SSLMode != "disable" || d.Refresh.Duration != 500*time.Millisecond {
		t.Errorf("directory = %+v", *d)
	}
	if !strings.Contains(d.DSN(), "passfile='/etc/tenantproxy/pgpass'") {
		t.Errorf("DSN %q lacks the passfile", d.DSN())
	}
}

func TestUserNames(t *testing.T) {
	for name, want := range map[string]bool{
		"alice": true, "svc_1": true, "a.b@c-d": true, "_x": true, strings.Repeat("a", 63): true,
		"": false, "-x": false, ".x": false, "o'brien": false, "a b": false, strings.Repeat("a", 64): false, "é": false,
	} {
		if ValidUser(name) != want {
			t.Errorf("ValidUser(%q) = %v, want %v", name, !want, want)
		}
	}
}

func TestMissingFile(t *testing.T) {
	if _, err := Load("/nonexistent/tenantproxy.toml"); !os.IsNotExist(err) {
		t.Errorf("want a not-exist error, got %v", err)
	}
}

func TestByteSizes(t *testing.T) {
	for text, want := range map[string]int64{
		`1048576`: 1 << 20, `"512KiB"`: 512 << 10, `"16MiB"`: 16 << 20, `"1GiB"`: 1 << 30, `"65536B"`: 65536,
	} {
		cfg, err := Parse("t.toml", []byte(minimal+"\n[limits]\nclient_prepared_statement_memory = "+text+"\n"))
		if err != nil {
			t.Errorf("%s: %v", text, err)
			continue
		}
		if int64(cfg.Limits.ClientStatementMemory) != want {
			t.Errorf("%s: %d, want %d", text, cfg.Limits.GuardMemory, want)
		}
		if got, _ := ByteSize(want).MarshalText(); text[0] == '"' && `"`+string(got)+`"` != text && text != `"65536B"` {
			t.Errorf("%d prints as %s", want, got)
		}
	}
	for _, bad := range []string{`"16 furlongs"`, `"-1MiB"`, `"9999999999999TiB"`, `1.5`} {
		if _, err := Parse("t.toml", []byte(minimal+"\n[limits]\nclient_prepared_statement_memory = "+bad+"\n")); err == nil || !strings.Contains(err.Error(), "client_prepared_statement_memory") {
			t.Errorf("%s: accepted or unclear: %v", bad, err)
		}
	}
}

func TestDSNCarriesTheRootCertificate(t *testing.T) {
	t.Setenv("TENANTPROXY_LISTEN", "")
	cfg, err := Parse("tls.toml", []byte(minimal+"\n[backend]\nsslmode = \"verify-full\"\nsslrootcert = \"/etc/tenant proxy/ca.pem\"\n"))
	if err != nil {
		t.Fatal(err)
	}
	if dsn := cfg.Backend.DSN(); !strings.Contains(dsn, `sslmode=verify-full`) || !strings.Contains(dsn, `sslrootcert='/etc/tenant proxy/ca.pem'`) {
		t.Errorf("DSN %q lacks sslmode or sslrootcert", dsn)
	}
	if dsn := Defaults().Backend.DSN(); strings.Contains(dsn, "sslrootcert") {
		t.Errorf("DSN %q names a root certificate nobody configured", dsn)
	}
}

func TestReloadKeepsRestartOnlyKeys(t *testing.T) {
	t.Setenv("TENANTPROXY_LISTEN", "")
	running, err := Parse("minimal.toml", []byte(minimal))
	if err != nil {
		t.Fatal(err)
	}
	next, err := Parse("next.toml", []byte(`listen = "127.0.0.1:7000"
max_client_connections = 7
`+minimal+`
[pool]
size = 3
[limits]
max_connections_per_tenant = 5
`))
	if err != nil {
		t.Fatal(err)
	}
	kept := next.KeepRestartOnly(running)
	if strings.Join(kept, ",") != "listen,pool.size" {
		t.Errorf("kept = %v, want listen,pool.size", kept)
	}
	if next.Listen != running.Listen || next.Pool.Size != running.Pool.Size {
		t.Errorf("restart-only keys changed: listen %s, pool.size %d", next.Listen, next.Pool.Size)
	}
	if next.MaxClients != 7 || next.Limits.MaxConnectionsPerTenant != 5 {
		t.Errorf("live keys not taken: max_client_connections %d, max_connections_per_tenant %d", next.MaxClients, next.Limits.MaxConnectionsPerTenant)
	}
}

func TestSettingsMaskSecrets(t *testing.T) {
	t.Setenv("TENANTPROXY_LISTEN", "")
	cfg, err := Load("../config.example.toml")
	if err != nil {
		t.Fatal(err)
	}
	byKey := map[string]Setting{}
	for _, s := range cfg.Settings() {
		byKey[s.Key] = s
	}
	for key, want := range map[string]Setting{
		"backend.password": {Value: "****", Live: false},
		"pool.size":        {Value: "20", Live: false},
		"listen":           {Value: `"127.0.0.1:5432"`, Live: false},
		"auth_timeout":     {Value: `"10s"`, Live: true},
		"users":            {Value: "alice, bob, carol", Live: true},
		"admins":           {Value: "admin", Live: true},
	} {
		got := byKey[key]
		if got.Value != want.Value || got.Live != want.Live {
			t.Errorf("%s = %q (live %v), want %q (live %v)", key, got.Value, got.Live, want.Value, want.Live)
		}
	}
	for _, s := range cfg.Settings() {
		if strings.Contains(s.Value, "SCRAM-SHA-256") || strings.Contains(s.Value, "demo") {
			t.Errorf("%s shows a secret: %s", s.Key, s.Value)
		}
	}
}
