package proxy_test

import (
	"encoding/json"
	"fmt"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"slices"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// node-postgres: 20 concurrent clients of 5 tenants, with named prepared statements.
func TestNodePostgres(t *testing.T) {
	dir := filepath.Join(pgtest.RepoRoot(), "tests", "node")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "pg")); err != nil {
		t.Fatalf("node-postgres is not installed: run scripts/node-deps (or make test): %v", err)
	}
	both(t, func(t *testing.T, p *testProxy) {
		host, port, _ := net.SplitHostPort(p.addr)
		type user struct {
			User     string `json:"user"`
			Password string `json:"password"`
			Tenant   string `json:"tenant"`
		}
		var users []user
		for i := range 20 {
			tenant := manyTenants[i%5]
			users = append(users, user{tenant, password, tenant})
		}
		cfg, _ := json.Marshal(map[string]any{"host": host, "port": port, "users": users, "rounds": 5})
		cmd := exec.Command("node", "clients.mjs", string(cfg))
		cmd.Dir = dir
		out, err := cmd.Output()
		if err != nil {
			stderr := ""
			if ee, ok := err.(*exec.ExitError); ok {
				stderr = string(ee.Stderr)
			}
			t.Fatalf("node: %v\n%s%s", err, out, stderr)
		}
		var results []struct {
			User    string   `json:"user"`
			Tenant  string   `json:"tenant"`
			Seen    []string `json:"seen"`
			Tenants []string `json:"tenants"`
			Refused string   `json:"refused"`
			After   string   `json:"after"`
		}
		if err := json.Unmarshal(out, &results); err != nil {
			t.Fatalf("node output: %v\n%s", err, out)
		}
		if len(results) != 20 {
			t.Fatalf("%d results", len(results))
		}
		for _, r := range results {
			if !slices.Equal(r.Seen, []string{r.Tenant}) || !slices.Equal(r.Tenants, []string{r.Tenant}) || r.After != r.Tenant {
				t.Errorf("%s (%s): saw %v, sessions %v, after %q", r.User, r.Tenant, r.Seen, r.Tenants, r.After)
			}
			if r.Refused != "42501" {
				t.Errorf("%s: SET of the tenant context gave %q, want 42501", r.User, r.Refused)
			}
		}
	})
}

// psql, scripted: the client most people will try first.
func TestPsql(t *testing.T) {
	both(t, func(t *testing.T, p *testProxy) {
		seedEntities(t, p.db, "acme", 2)
		seedEntities(t, p.db, "globex", 3)
		run := func(env []string, url, script string) (string, error) {
			cmd := exec.Command("psql", "-X", "-q", "-At", "-v", "ON_ERROR_STOP=1", "-d", url)
			cmd.Env = append(os.Environ(), env...)
			cmd.Stdin = strings.NewReader(script)
			out, err := cmd.CombinedOutput()
			return strings.TrimSpace(string(out)), err
		}
		out, err := run(nil, p.url("alice"), "SELECT count(*) FROM llmspell.entities;\nSHOW app.current_tenant_id;\n\\copy (SELECT DISTINCT tenant_id FROM llmspell.entities) TO STDOUT\n")
		if err != nil || out != "2\nacme\nacme" {
			t.Errorf("alice: %v\n%s", err, out)
		}
		out, err = run([]string{"PGOPTIONS=-c tenant=globex"}, p.url("carol"), "SELECT count(*) FROM llmspell.entities;\nSHOW app.current_tenant_id;\n")
		if err != nil || out != "3\nglobex" {
			t.Errorf("carol with PGOPTIONS: %v\n%s", err, out)
		}
		out, err = run(nil, p.url("bob"), "SET app.current_tenant_id = 'acme';\n")
		if err == nil || !strings.Contains(out, "ERROR:  tenantproxy") {
			t.Errorf("psql SET of the tenant: %v\n%s", err, out)
		}
		out, err = run(nil, p.url("bob"), fmt.Sprintf("\\set ON_ERROR_STOP 0\nSET app.current_tenant_id = 'acme';\nSELECT count(*) FROM llmspell.entities;\nBEGIN;\nSELECT 1/0;\nROLLBACK;\nSHOW app.current_tenant_id;\n"))
		if !strings.Contains(out, "\n3\n") || !strings.Contains(out, "division by zero") || !strings.HasSuffix(out, "\nglobex") {
			t.Errorf("psql session after errors: %v\n%s", err, out)
		}
	})
}
