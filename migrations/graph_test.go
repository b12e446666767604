package migrations_test

import (
	"slices"
	"testing"
	"time"

	"github.com/jackc/pgx/v5"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
)

func entity(t *testing.T, conn *pgx.Conn, tenant, name string) string {
	t.Helper()
	var id string
	err := conn.QueryRow(ctx, `INSERT INTO llmspell.entities (tenant_id, entity_type, name, valid_time_start, transaction_time_start)
		VALUES ($1, 'thing', $2, '2020-01-01', '2020-01-01') RETURNING id`, tenant, name).Scan(&id)
	if err != nil {
		t.Fatalf("entity %s: %v", name, err)
	}
	return id
}

func TestRelationshipCannotReferenceAnotherTenantsEntity(t *testing.T) {
	db := pgtest.New(t)
	acme, globex := db.TenantConn(t, "acme"), db.TenantConn(t, "globex")
	mine := entity(t, acme, "acme", "mine")
	theirs := entity(t, globex, "globex", "theirs")

	_, err := acme.Exec(ctx, `INSERT INTO llmspell.relationships (tenant_id, source_id, target_id, relationship_type)
		VALUES ('acme', $1, $2, 'points_at')`, mine, theirs)
	wantSQLState(t, err, "23503", "acme relationship to a globex entity")

	_, err = acme.Exec(ctx, `INSERT INTO llmspell.relationships (tenant_id, source_id, target_id, relationship_type)
		VALUES ('globex', $1, $2, 'points_at')`, theirs, theirs)
	wantSQLState(t, err, "42501", "acme writing a relationship inside globex")

	_, err = acme.Exec(ctx, `UPDATE llmspell.relationships SET target_id = $1`, theirs)
	if err != nil {
		t.Fatalf("update of no visible row: %v", err)
	}
	var n int
	if err := globex.QueryRow(ctx, "SELECT count(*) FROM llmspell.relationships").Scan(&n); err != nil || n != 0 {
		t.Errorf("globex has %d relationships (%v), want 0", n, err)
	}
}

func TestTimeRangesAreChecked(t *testing.T) {
	db := pgtest.New(t)
	conn := db.TenantConn(t, "acme")
	_, err := conn.Exec(ctx, `INSERT INTO llmspell.entities (tenant_id, entity_type, name, valid_time_start, valid_time_end)
		VALUES ('acme', 'thing', 'backwards', '2024-01-02', '2024-01-01')`)
	wantSQLState(t, err, "23514", "valid time ending before it starts")
	_, err = conn.Exec(ctx, `INSERT INTO llmspell.entities (tenant_id, entity_type, name, transaction_time_start, transaction_time_end)
		VALUES ('acme', 'thing', 'backwards', '2024-01-02', '2024-01-02')`)
	wantSQLState(t, err, "23514", "empty transaction time")
}

// twoHops follows two relationships from start, both valid at validAt and known at knownAt.
const twoHops = `
SELECT e.name
FROM llmspell.relationships r1
JOIN llmspell.relationships r2 ON r2.tenant_id = r1.tenant_id AND r2.source_id = r1.target_id
JOIN llmspell.entities e ON e.tenant_id = r2.tenant_id AND e.id = r2.target_id
WHERE r1.source_id = $1
  AND tstzrange(r1.valid_time_start, r1.valid_time_end) @> $2::timestamptz
  AND tstzrange(r2.valid_time_start, r2.valid_time_end) @> $2::timestamptz
  AND tstzrange(e.valid_time_start, e.valid_time_end) @> $2::timestamptz
  AND tstzrange(r1.transaction_time_start, r1.transaction_time_end) @> $3::timestamptz
  AND tstzrange(r2.transaction_time_start, r2.transaction_time_end) @> $3::timestamptz
  AND tstzrange(e.transaction_time_start, e.transaction_time_end) @> $3::timestamptz
ORDER BY e.name`

func TestTwoHopQueryStaysInTheTenantAndHonoursAsOfTime(t *testing.T) {
	db := pgtest.New(t)
	acme, globex := db.TenantConn(t, "acme"), db.TenantConn(t, "globex")
	link := func(conn *pgx.Conn, tenant, from, to, validFrom, validTo, knownFrom string) {
		t.Helper()
		_, err := conn.Exec(ctx, `INSERT INTO llmspell.relationships
			(tenant_id, source_id, target_id, relationship_type, valid_time_start, valid_time_end, transaction_time_start)
			VALUES ($1, $2, $3, 'knows', $4, $5, $6)`, tenant, from, to, validFrom, validTo, knownFrom)
		if err != nil {
			t.Fatal(err)
		}
	}

	// acme: alice -> bob -> {carol, dave (from 2023), erin (known only from 2024), frank (until 2022)}
	alice, bob := entity(t, acme, "acme", "alice"), entity(t, acme, "acme", "bob")
	carol, dave := entity(t, acme, "acme", "carol"), entity(t, acme, "acme", "dave")
	erin, frank := entity(t, acme, "acme", "erin"), entity(t, acme, "acme", "frank")
	link(acme, "acme", alice, bob, "2020-01-01", "infinity", "2020-01-01")
	link(acme, "acme", bob, carol, "2020-01-01", "infinity", "2020-01-01")
	link(acme, "acme", bob, dave, "2023-01-01", "infinity", "2020-01-01")
	link(acme, "acme", bob, erin, "2020-01-01", "infinity", "2024-01-01")
	link(acme, "acme", bob, frank, "2020-01-01", "2022-01-01", "2020-01-01")

	// globex has the same shape and names, and one more friend: mallory.
	g1, g2 := entity(t, globex, "globex", "alice"), entity(t, globex, "globex", "bob")
	g3 := entity(t, globex, "globex", "mallory")
	link(globex, "globex", g1, g2, "2020-01-01", "infinity", "2020-01-01")
	link(globex, "globex", g2, g3, "2020-01-01", "infinity", "2020-01-01")

	hops := func(conn *pgx.Conn, start, validAt, knownAt string) []string {
		t.Helper()
		return pgtest.QueryStrings(t, conn, twoHops, start, validAt, knownAt)
	}
	now := time.Now().UTC().Format(time.RFC3339Nano)
	cases := []struct {
		validAt, knownAt string
		want             []string
	}{
		{now, now, []string{"carol", "dave", "erin"}},
		{"2021-06-01", now, []string{"carol", "erin", "frank"}},
		{"2021-06-01", "2021-06-01", []string{"carol", "frank"}},
		{"2023-06-01", "2023-06-01", []string{"carol", "dave"}},
		{"2019-01-01", now, nil},
	}
	for _, c := range cases {
		if got := hops(acme, alice, c.validAt, c.knownAt); !slices.Equal(got, c.want) {
			t.Errorf("acme two hops valid at %s, known at %s: %v, want %v", c.validAt, c.knownAt, got, c.want)
		}
	}
	// The other tenant's start node leads nowhere for acme, and acme's nowhere for globex.
	if got := hops(acme, g1, now, now); len(got) != 0 {
		t.Errorf("acme walking from globex's alice reached %v", got)
	}
	if got := hops(globex, alice, now, now); len(got) != 0 {
		t.Errorf("globex walking from acme's alice reached %v", got)
	}
	if got := hops(globex, g1, now, now); !slices.Equal(got, []string{"mallory"}) {
		t.Errorf("globex two hops: %v, want [mallory]", got)
	}
}
