package proxy_test

import (
	"bufio"
	"encoding/json"
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// refusals reads tenantproxy_refusals_total for a tenant and rule from the proxy's registry,
// as a scrape would.
func refusals(p *testProxy, tenant, rule string) float64 {
	return metricValue(p, "tenantproxy_refusals_total", map[string]string{"tenant": tenant, "rule": rule})
}

// Each refusal is logged with who, where from, which rule and the statement without its
// literals, and counted per tenant.
func TestRefusalsAreLoggedAndCounted(t *testing.T) {
	db := pgtest.New(t)
	p := startProxy(t, db, "transaction")
	conn := p.connect(t, "alice")
	for range 2 {
		_, err := conn.Exec(ctx, "SET app.current_tenant_id = 'globex-secret-literal'")
		wantCode(t, err, "42501")
	}
	_, err := conn.Exec(ctx, "SELECT set_config('app.current_tenant_id', 'x', false)")
	wantCode(t, err, "42501")

	if n := refusals(p, "acme", "reserved-setting"); n != 2 {
		t.Errorf("reserved-setting refusals counted for acme: %v, want 2", n)
	}
	if n := refusals(p, "acme", "set-config"); n != 1 {
		t.Errorf("set-config refusals counted for acme: %v, want 1", n)
	}
	if n := refusals(p, "globex", "reserved-setting"); n != 0 {
		t.Errorf("refusals counted for globex: %v", n)
	}

	found := 0
	sc := bufio.NewScanner(strings.NewReader(p.logs.String()))
	for sc.Scan() {
		var entry map[string]any
		if err := json.Unmarshal(sc.Bytes(), &entry); err != nil {
			t.Fatalf("log line is not JSON: %s", sc.Text())
		}
		if entry["message"] != "statement refused" || entry["rule"] != "reserved-setting" {
			continue
		}
		found++
		if entry["tenant"] != "acme" || entry["user"] != "alice" || entry["code"] != "42501" ||
			!strings.HasPrefix(entry["client"].(string), "127.0.0.1:") || entry["level"] != "warn" {
			t.Errorf("log entry lacks who or where: %v", entry)
		}
		statement, _ := entry["statement"].(string)
		if !strings.Contains(statement, "app.current_tenant_id") || strings.Contains(statement, "secret") {
			t.Errorf("statement fingerprint %q: want the statement without its literal", statement)
		}
	}
	if found != 2 {
		t.Errorf("%d refusal log lines, want 2:\n%s", found, p.logs.String())
	}
}
