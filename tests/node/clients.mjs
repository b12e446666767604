// node-postgres clients for the Go tests: each connects through tenantproxy, runs named prepared
// statements and plain queries, and reports what it saw as one JSON line.
//
//   node clients.mjs '<json config>'
//   config: {"host", "port", "users": [{"user", "password", "tenant"}], "rounds"}
import pg from 'pg';

const cfg = JSON.parse(process.argv[2]);

async function client({ user, password, tenant }, index) {
  const tag = `${user}#${index}`;
  const c = new pg.Client({ host: cfg.host, port: cfg.port, user, password, database: 'app' });
  await c.connect();
  const seen = new Set();
  const tenants = new Set();
  try {
    for (let i = 0; i < cfg.rounds; i++) {
      await c.query({
        name: 'insert-entity',
        text: 'INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ($1, $2, $3)',
        values: [tenant, 'node', `${tag}-${i}`],
      });
      const r = await c.query({ name: 'visible-tenants', text: 'SELECT DISTINCT tenant_id FROM llmspell.entities' });
      r.rows.forEach((row) => seen.add(row.tenant_id));
      const s = await c.query("SELECT current_setting('app.current_tenant_id') AS t");
      tenants.add(s.rows[0].t);
      await c.query('BEGIN');
      const n = await c.query({ name: 'count-mine', text: 'SELECT count(*)::int AS n FROM llmspell.entities WHERE name LIKE $1', values: [`${tag}-%`] });
      await c.query('COMMIT');
      if (n.rows[0].n !== i + 1) throw new Error(`${tag}: counted ${n.rows[0].n}, want ${i + 1}`);
    }
    let refused = null;
    try {
      await c.query("SET app.current_tenant_id = 'someone-else'");
    } catch (e) {
      refused = e.code;
    }
    const after = await c.query("SELECT current_setting('app.current_tenant_id') AS t");
    return { user, tenant, seen: [...seen], tenants: [...tenants], refused, after: after.rows[0].t };
  } finally {
    await c.end();
  }
}

const results = await Promise.all(cfg.users.map((u, i) => client(u, i)));
console.log(JSON.stringify(results));
