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

func TestMissingFile(t *testing.T) {
	if _, err := Load("/nonexistent/tenantproxy.toml"); !os.IsNotExist(err) {
		t.Errorf("want a not-exist error, got %v", err)
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
