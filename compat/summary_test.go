package compat

import (
	"slices"
	"testing"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

// summary is what a client reports after the scenario:
//
//  1. tenant: SHOW app.current_tenant_id;
//  2. reads: ten counts of the tenant's seeded entities, by a query with a parameter (enough
//     executions for a driver that prepares on the server after a few);
//  3. a transaction that inserts "<tenant>-committed", and "<tenant>-savepoint" under a
//     savepoint it rolls back, and commits;
//  4. a transaction at a stricter isolation level that inserts "<tenant>-rolledback" and rolls
//     back;
//  5. a transaction that inserts "<tenant>-failed", then an entity with a seeded id: error_code
//     is the SQLSTATE of the duplicate key;
//  6. after that error: tenant_after_error, the names of the entities of type 'compat' it sees,
//     and the tenants whose rows it sees.
type summary struct {
	Client           string   `json:"client"`
	Tenant           string   `json:"tenant"`
	Reads            []int    `json:"reads"`
	ErrorCode        string   `json:"error_code"`
	TenantAfterError string   `json:"tenant_after_error"`
	Names            []string `json:"names"`
	Visible          []string `json:"visible"`
}

// check fails unless the client saw and wrote what the scenario should have.
func (tg *target) check(t *testing.T, s *summary) {
	t.Helper()
	t.Logf("client: %s", s.Client)
	wantReads := slices.Repeat([]int{seedsPerTenant}, 10)
	committed := tg.tenant + "-committed"
	for _, c := range []struct {
		what      string
		got, want any
		equal     bool
	}{
		{"tenant", s.Tenant, tg.tenant, s.Tenant == tg.tenant},
		{"reads", s.Reads, wantReads, slices.Equal(s.Reads, wantReads)},
		{"error code of the duplicate key", s.ErrorCode, "23505", s.ErrorCode == "23505"},
		{"tenant after the error", s.TenantAfterError, tg.tenant, s.TenantAfterError == tg.tenant},
		{"names it sees", s.Names, []string{committed}, slices.Equal(s.Names, []string{committed})},
		{"tenants it sees", s.Visible, []string{tg.tenant}, slices.Equal(s.Visible, []string{tg.tenant})},
	} {
		if !c.equal {
			t.Errorf("%s: got %v, want %v", c.what, c.got, c.want)
		}
	}
	stored := storedRows(t, tg)
	if want := []string{tg.tenant + " " + committed}; !slices.Equal(stored, want) {
		t.Errorf("rows the client wrote, as stored: %v, want %v", stored, want)
	}
}

// storedRows are the tenant and name of each entity of type 'compat' named after the client's
// tenant, read as the superuser.
func storedRows(t *testing.T, tg *target) []string {
	t.Helper()
	admin := pgtest.Connect(t, tg.adminURL)
	return pgtest.QueryStrings(t, admin, `
		SELECT tenant_id || ' ' || name FROM llmspell.entities
		WHERE entity_type = 'compat' AND name LIKE $1 || '-%' ORDER BY 1`, tg.tenant)
}
