package faults

import (
	"context"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/tenantproxy/tenantproxy/config"
)

// TLS between the proxy and the database: the package's cluster runs with ssl = on and a
// certificate for localhost and 127.0.0.1 from a CA the tests made. The proxy must speak TLS to
// it when told to, and refuse a server whose certificate does not match, with a clear error at
// the first client and in its log.
func TestBackendTLS(t *testing.T) {
	otherCA, err := newCA("some other CA")
	if err != nil {
		t.Fatal(err)
	}
	otherCAFile := filepath.Join(t.TempDir(), "other-ca.crt")
	if err := os.WriteFile(otherCAFile, otherCA.certPEM, 0o600); err != nil {
		t.Fatal(err)
	}
	// onOtherAddress points the proxy at 127.0.0.2, which the server's certificate does not name.
	onOtherAddress := func(t *testing.T) func(*config.Config) {
		return func(c *config.Config) {
			r := newRelay(t, "127.0.0.2")
			c.Backend.Host, c.Backend.Port = r.host, r.port
		}
	}
	cases := []struct {
		name, sslmode, rootCert string
		edit                    func(t *testing.T) func(*config.Config)
		refusal                 string // what the error must say; "" when the login must succeed
	}{
		{name: "require", sslmode: "require"},
		{name: "verify-full", sslmode: "verify-full", rootCert: pg.caFile},
		{name: "verify-full by host name", sslmode: "verify-full", rootCert: pg.caFile,
			edit: func(*testing.T) func(*config.Config) { return func(c *config.Config) { c.Backend.Host = "localhost" } }},
		{name: "verify-ca on an address the certificate does not name", sslmode: "verify-ca", rootCert: pg.caFile, edit: onOtherAddress},
		{name: "verify-full with the wrong CA", sslmode: "verify-full", rootCert: otherCAFile,
			refusal: "certificate signed by unknown authority"},
		{name: "verify-full on an address the certificate does not name", sslmode: "verify-full", rootCert: pg.caFile,
			edit: onOtherAddress, refusal: "certificate is valid for"},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			edits := []func(*config.Config){func(cfg *config.Config) {
				cfg.Backend.SSLMode = c.sslmode
				cfg.Backend.SSLRootCert = c.rootCert
			}}
			if c.edit != nil {
				edits = append(edits, c.edit(t))
			}
			f := newFixture(t, "transaction", edits...)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			conn, err := f.dial(ctx, "t01", false)
			if c.refusal == "" {
				if err != nil {
					t.Fatalf("login through a proxy with backend sslmode %s: %v", c.sslmode, err)
				}
				defer conn.Close(ctx)
				if err := checkSession(ctx, conn, "t01"); err != nil {
					t.Error(err)
				}
				// The app role may not read pg_stat_ssl: the superuser looks.
				const sessions = " FROM pg_stat_ssl JOIN pg_stat_activity USING (pid) WHERE datname = current_database() AND usename = 'tenantproxy_app'"
				if plain, encrypted := f.db.count(t, "SELECT count(*)"+sessions+" AND NOT ssl"), f.db.count(t, "SELECT count(*)"+sessions+" AND ssl"); plain > 0 || encrypted == 0 {
					t.Errorf("backend sessions: %d without TLS, %d with", plain, encrypted)
				}
				return
			}
			if err == nil {
				conn.Close(ctx)
				t.Fatalf("the proxy connected to a server whose certificate should be refused (%s)", c.name)
			}
			wantSQLState(t, "the first client", err, "08006")
			if !strings.Contains(err.Error(), c.refusal) {
				t.Errorf("the client's error does not say why: want %q in %v", c.refusal, err)
			}
			if !strings.Contains(f.logs.String(), c.refusal) {
				t.Errorf("the proxy's log (info level) does not say why the database was refused (%q):\n%s", c.refusal, f.logs.tail(20))
			}
		})
	}
}
