// TypeORM (node-postgres underneath) with its defaults: the compatibility scenario of compat/.
//   node compat_typeorm.mjs   (settings: see compat_common.mjs)
import { settings as s, Rollback, duplicateKeyCode, load, packageVersion, report, rolledBack, step } from './compat_common.mjs';

const { DataSource, EntitySchema } = await load('typeorm');

const Entity = new EntitySchema({
  name: 'Entity',
  schema: 'llmspell',
  tableName: 'entities',
  columns: {
    tenant_id: { type: 'text', primary: true },
    id: { type: 'uuid', primary: true, generated: 'uuid' },
    entity_type: { type: 'text' },
    name: { type: 'text' },
  },
});
const summary = { client: `TypeORM ${packageVersion('typeorm')}` };
const ds = new DataSource({
  type: 'postgres', host: s.host, port: s.port, username: s.user, password: s.password, database: s.database,
  entities: [Entity],
});

const insert = (manager, name, extra = {}) =>
  manager.insert(Entity, { tenant_id: s.tenant, entity_type: 'compat', name: `${s.tenant}-${name}`, ...extra });
const showTenant = async () => (await ds.query('SHOW app.current_tenant_id'))[0]['app.current_tenant_id'];

await step('connect', () => ds.initialize());
summary.tenant = await step('tenant', showTenant);
summary.reads = await step('reads', async () => {
  const counts = [];
  for (let i = 0; i < 10; i++) counts.push(await ds.getRepository(Entity).countBy({ entity_type: 'seed' }));
  return counts;
});
await step('commit', async () => {
  const qr = ds.createQueryRunner();
  try {
    await qr.startTransaction();
    await insert(qr.manager, 'committed');
    await qr.startTransaction();
    await insert(qr.manager, 'savepoint');
    await qr.rollbackTransaction();
    await qr.commitTransaction();
  } finally {
    await qr.release();
  }
});
await step('rollback', () => rolledBack(() => ds.transaction('SERIALIZABLE', async (m) => {
  await insert(m, 'rolledback');
  throw new Rollback();
})));
summary.error_code = await step('error', () => duplicateKeyCode(() => ds.transaction(async (m) => {
  await insert(m, 'failed');
  await insert(m, 'duplicate', { id: s.seedID });
})));
await step('after', async () => {
  summary.tenant_after_error = await showTenant();
  const repo = ds.getRepository(Entity);
  summary.names = (await repo.find({ where: { entity_type: 'compat' }, order: { name: 'ASC' } })).map((e) => e.name);
  summary.visible = (await repo.createQueryBuilder('e').select('DISTINCT e.tenant_id', 'tenant_id').orderBy('tenant_id').getRawMany())
    .map((r) => r.tenant_id);
});
await step('close', () => ds.destroy());
report(summary);
