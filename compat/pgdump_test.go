package compat

import (
	"bytes"
	"fmt"
	"os/exec"
	"slices"
	"strconv"
	"strings"
	"testing"
)

// runPgDump: pg_dump --enable-row-security --data-only -t llmspell.entities must dump the
// tenant's rows and no other's.
func runPgDump(t *testing.T, tg *target) {
	path, err := exec.LookPath("pg_dump")
	if err != nil {
		t.Fatalf("pg_dump is not installed: run scripts/pgenv install (make deps does), or apt-get install postgresql-client")
	}
	if version, err := exec.Command(path, "--version").Output(); err == nil {
		t.Logf("client: %s", strings.TrimSpace(string(version)))
	}
	cmd := exec.CommandContext(opContext(t), path, "--enable-row-security", "--data-only", "-t", "llmspell.entities",
		"-h", tg.host, "-p", strconv.Itoa(tg.port), "-U", tg.user, "-d", tg.database)
	cmd.Env = append(cleanEnv(), "PGPASSWORD="+tg.password)
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("pg_dump failed (%v):\n%s", err, stderr.String())
	}
	tenants, err := dumpedTenants(string(out), "llmspell.entities")
	if err != nil {
		t.Fatalf("%v\n%s", err, out)
	}
	if want := slices.Repeat([]string{tg.tenant}, seedsPerTenant); !slices.Equal(tenants, want) {
		t.Errorf("pg_dump dumped rows of tenants %v, want %v", tenants, want)
	}
}

// dumpedTenants is the tenant_id of each row in the dump's COPY of table.
func dumpedTenants(dump, table string) ([]string, error) {
	lines := strings.Split(dump, "\n")
	start := slices.IndexFunc(lines, func(l string) bool { return strings.HasPrefix(l, "COPY "+table+" (") })
	if start < 0 {
		return nil, fmt.Errorf("the dump has no COPY of %s", table)
	}
	columns := strings.Split(strings.TrimSuffix(strings.SplitN(lines[start], "(", 2)[1], ") FROM stdin;"), ", ")
	column := slices.Index(columns, "tenant_id")
	if column < 0 {
		return nil, fmt.Errorf("the COPY of %s has no tenant_id: %s", table, lines[start])
	}
	tenants := []string{}
	for _, l := range lines[start+1:] {
		if l == `\.` {
			return tenants, nil
		}
		fields := strings.Split(l, "\t")
		if column >= len(fields) {
			return nil, fmt.Errorf("a row of %d fields: %q", len(fields), l)
		}
		tenants = append(tenants, fields[column])
	}
	return nil, fmt.Errorf("the COPY of %s does not end", table)
}
