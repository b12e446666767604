package compat

import (
	"strings"
	"testing"

	"github.com/tenantproxy/tenantproxy/internal/pgtest"
	"github.com/tenantproxy/tenantproxy/migrations"
)

func TestMain(m *testing.M) { pgtest.Main(m) }

// client is one driver or ORM and how to run the scenario with it.
type client struct {
	name string // subtest name, and the client's user and tenant
	// prepares says whether the scenario makes the client prepare named statements on the
	// server; direct runs check it, so the suite keeps exercising what it claims to.
	prepares bool
	run      func(t *testing.T, tg *target)
	// directSetup is SQL the superuser runs in a direct run's database first: what the
	// lockdown takes from the app role and the client cannot do without.
	directSetup string
}

var clients = []client{
	{name: "pgjdbc", prepares: true, run: pgJDBC.run},
	{name: "activerecord", prepares: true, run: activeRecord.run},
	{name: "asyncpg", prepares: true, run: asyncpg.run},
	{name: "psycopg", prepares: true, run: psycopg.run},
	{name: "sqlalchemy", run: sqlAlchemy.run},
	{name: "django", run: django.run},
	{name: "pdo", prepares: true, run: pdo.run},
	{name: "sequelize", run: sequelize.run},
	{name: "typeorm", run: typeORM.run},
	{name: "postgresjs", prepares: true, run: postgresJS.run},
	{name: "gorm", prepares: true, run: runGORM},
	{name: "libpq", run: runLibPQ},
	{name: "pgdump", run: runPgDump,
		// The lockdown revokes set_config, which pg_dump calls (to empty search_path) first.
		directSetup: "GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO " + migrations.AppRole},
}

// modes: straight to PostgreSQL (the baseline, recorded), then through the proxy in each pool
// mode.
var modes = []string{"direct", "transaction", "session"}

// TestDrivers runs every client in every mode: TestDrivers/<client>/<mode>. The proxied runs
// share one proxy per pool mode; a direct run gets a database of its own. Run with -v to see
// what each client sends (the direct runs log it).
func TestDrivers(t *testing.T) {
	var names []string
	for _, c := range clients {
		names = append(names, c.name)
	}
	proxies := map[string]*proxied{
		"transaction": startProxy(t, "transaction", names),
		"session":     startProxy(t, "session", names),
	}
	for _, c := range clients {
		t.Run(c.name, func(t *testing.T) {
			for _, mode := range modes {
				t.Run(mode, func(t *testing.T) {
					if mode == "direct" {
						tg := directTarget(t, c.name, c.directSetup)
						c.run(t, tg)
						checkTrace(t, c, tg.recorder)
						return
					}
					tg := proxies[mode].target(c.name)
					start := tg.logs.size()
					t.Cleanup(func() {
						if logs := tg.logs.since(start); t.Failed() && logs != "" {
							t.Logf("proxy log:\n%s", logs)
						}
					})
					c.run(t, tg)
				})
			}
		})
	}
}

// checkTrace logs what the client sent and checks that it prepared named statements exactly
// when it is expected to.
func checkTrace(t *testing.T, c client, r *recorder) {
	t.Logf("what %s sent:\n%s", c.name, strings.Join(r.trace(), "\n"))
	names := r.preparedNames()
	switch {
	case c.prepares && len(names) == 0:
		t.Errorf("%s prepared no named statement: the scenario no longer exercises server-side prepares", c.name)
	case !c.prepares && len(names) > 0:
		t.Errorf("%s prepared named statements %v: mark it as a client that prepares", c.name, names)
	}
}
