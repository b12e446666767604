// postgres.js with its defaults (its own pool, statements prepared on the server): the
// compatibility scenario of compat/.  node compat_postgresjs.mjs   (settings: see compat_common.mjs)
import { settings as s, Rollback, duplicateKeyCode, load, packageVersion, report, rolledBack, step } from './compat_common.mjs';

const { default: postgres } = await load('postgres');

const summary = { client: `postgres.js ${packageVersion('postgres')}` };
const sql = await step('connect', () =>
  postgres({ host: s.host, port: s.port, user: s.user, pass: s.password, database: s.database }));

const insert = (tx, name) =>
  tx`INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES (${s.tenant}, 'compat', ${`${s.tenant}-${name}`})`;

summary.tenant = await step('tenant', async () => (await sql`SHOW app.current_tenant_id`)[0]['app.current_tenant_id']);
summary.reads = await step('reads', async () => {
  const counts = [];
  for (let i = 0; i < 10; i++) {
    const [row] = await sql`SELECT count(*) FROM llmspell.entities WHERE entity_type = ${'seed'}`;
    counts.push(Number(row.count));
  }
  return counts;
});
await step('commit', () => sql.begin(async (tx) => {
  await insert(tx, 'committed');
  await rolledBack(() => tx.savepoint(async (sp) => {
    await insert(sp, 'savepoint');
    throw new Rollback();
  }));
}));
await step('rollback', () => rolledBack(() => sql.begin('isolation level serializable', async (tx) => {
  await insert(tx, 'rolledback');
  throw new Rollback();
})));
summary.error_code = await step('error', () => duplicateKeyCode(() => sql.begin(async (tx) => {
  await insert(tx, 'failed');
  await tx`INSERT INTO llmspell.entities (tenant_id, id, entity_type, name)
    VALUES (${s.tenant}, ${s.seedID}, 'compat', ${`${s.tenant}-duplicate`})`;
})));
await step('after', async () => {
  summary.tenant_after_error = (await sql`SHOW app.current_tenant_id`)[0]['app.current_tenant_id'];
  summary.names = (await sql`SELECT name FROM llmspell.entities WHERE entity_type = ${'compat'} ORDER BY name`).map((r) => r.name);
  summary.visible = (await sql`SELECT DISTINCT tenant_id FROM llmspell.entities ORDER BY 1`).map((r) => r.tenant_id);
});
await step('close', () => sql.end());
report(summary);
