package main

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"path/filepath"
	"strconv"
	"strings"

	"github.com/tenantproxy/tenantproxy/config"
	"github.com/tenantproxy/tenantproxy/migrations"
)

// tenantproxyConfig is the TOML tenantproxy serves: transaction pooling, users bench (tenant
// acme) and t00..t49 (each its own tenant), with the SCRAM verifiers of verifiers.go.
func (e *env) tenantproxyConfig(port int, metrics string, threads int) string {
	var b strings.Builder
	fmt.Fprintf(&b, `# Written by bench/cmd/bench for one run.
listen = "127.0.0.1:%d"
database = "app"
max_client_connections = %d
threads = %d
metrics_listen = %q

[tls]
mode = "disable"

[backend]
host = %q
port = %d
database = %q
user = %q
password = %q
sslmode = "disable"

[pool]
mode = "transaction"
size = %d

[limits]
# The idle section holds every client as one user of one tenant.
max_connections_per_tenant = %d
max_connections_per_user = %d

[tenancy]
tenants = ["acme", "%s"]

# The login and idle sections open connections as fast as they can, as tenant acme: its logins
# are not paced. The fairness section's tenants keep the default login_rate.
[tenants.acme]
login_rate = 1000000

[log]
level = "warn"
format = "json"

[users.%s]
password = %q
tenant = "acme"
`, port, e.maxClients(), threads, metrics, e.admin.Host, e.admin.Port, e.admin.Database,
		migrations.AppRole, e.appPassword, poolSize, e.maxClients(), e.maxClients(), strings.Join(tenants, `", "`), benchUser, e.verifierOf(benchUser))
	for _, t := range tenants {
		fmt.Fprintf(&b, "\n[users.%s]\npassword = %q\ntenant = %q\n", t, e.verifierOf(t), t)
	}
	return b.String()
}

// checkTenantproxy runs `tenantproxy check` as the app role and keeps its answer for the
// report. Serving runs the same check first, which must pass: no --insecure-skip-check.
func (e *env) checkTenantproxy(ctx context.Context, rep *report) error {
	appURL := fmt.Sprintf("postgres://%s:%s@%s/%s?sslmode=disable", migrations.AppRole, e.appPassword,
		net.JoinHostPort(e.admin.Host, strconv.Itoa(int(e.admin.Port))), e.admin.Database)
	out, err := command(ctx, e.repo, cleanEnv(), e.tenantproxyBin(), "check", "--database-url", appURL)
	if err != nil {
		return fmt.Errorf("tenantproxy check: %w\n%s", err, out)
	}
	rep.Check = strings.TrimSpace(out)
	return nil
}

// startTenantproxy serves a generated config as a process of its own, key naming its files
// under the run's folder; threads is the config's threads (0: every CPU). The caller stops it.
func (e *env) startTenantproxy(ctx context.Context, key, label string, threads int) (*proxy, error) {
	port, err := freePort()
	if err != nil {
		return nil, err
	}
	metricsPort, err := freePort()
	if err != nil {
		return nil, err
	}
	metrics := fmt.Sprintf("127.0.0.1:%d", metricsPort)
	text := e.tenantproxyConfig(port, metrics, threads)
	path := filepath.Join(e.out, key+".toml")
	if _, err := config.Parse(path, []byte(text)); err != nil {
		return nil, fmt.Errorf("the generated configuration is invalid: %w", err)
	}
	if err := os.WriteFile(path, []byte(text), 0o600); err != nil {
		return nil, err
	}
	srv, err := startServer(label, []string{e.tenantproxyBin(), "serve", "--config", path},
		cleanEnv(), filepath.Join(e.out, key+".log"))
	if err != nil {
		return nil, err
	}
	p := &proxy{Key: key, Label: label, srv: srv, port: port, metrics: metrics, password: e.clientPassword}
	if err := srv.waitListening(ctx, fmt.Sprintf("127.0.0.1:%d", port)); err != nil {
		p.stop()
		return nil, err
	}
	if _, err := checkFileLimit(srv.pid, e.fileLimit()); err != nil {
		p.stop()
		return nil, fmt.Errorf("%s: %w", label, err)
	}
	return p, nil
}

// metric reads one unlabelled counter or gauge from tenantproxy's /metrics.
func (p *proxy) metric(ctx context.Context, name string) (float64, error) {
	if p.metrics == "" {
		return 0, fmt.Errorf("%s serves no metrics", p.Label)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+p.metrics+"/metrics", nil)
	if err != nil {
		return 0, err
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		return 0, err
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return 0, err
	}
	for _, line := range strings.Split(string(body), "\n") {
		if v, ok := strings.CutPrefix(line, name+" "); ok {
			return strconv.ParseFloat(strings.TrimSpace(v), 64)
		}
	}
	return 0, fmt.Errorf("%s not in %s's /metrics", name, p.Label)
}
