// Sequelize (node-postgres underneath) with its defaults: the compatibility scenario of
// compat/.  node compat_sequelize.mjs   (settings: see compat_common.mjs)
import { settings as s, Rollback, duplicateKeyCode, load, report, rolledBack, step } from './compat_common.mjs';

const { Sequelize, DataTypes, QueryTypes, Transaction } = await load('sequelize');

const summary = { client: `Sequelize ${Sequelize.version}` };
// Its log (every statement) goes to stderr, which the test shows when it fails.
const sequelize = new Sequelize(s.database, s.user, s.password, {
  host: s.host, port: s.port, dialect: 'postgres', logging: (msg) => console.error(msg),
});
const Entity = sequelize.define('Entity', {
  tenant_id: { type: DataTypes.TEXT, primaryKey: true },
  id: { type: DataTypes.UUID, primaryKey: true, defaultValue: DataTypes.UUIDV4 },
  entity_type: { type: DataTypes.TEXT, allowNull: false },
  name: { type: DataTypes.TEXT, allowNull: false },
}, { schema: 'llmspell', tableName: 'entities', underscored: true });

const create = (name, transaction, extra = {}) =>
  Entity.create({ tenant_id: s.tenant, entity_type: 'compat', name: `${s.tenant}-${name}`, ...extra }, { transaction });
const showTenant = async () =>
  (await sequelize.query('SHOW app.current_tenant_id', { type: QueryTypes.SELECT }))[0]['app.current_tenant_id'];

await step('connect', () => sequelize.authenticate());
summary.tenant = await step('tenant', showTenant);
summary.reads = await step('reads', async () => {
  const counts = [];
  for (let i = 0; i < 10; i++) counts.push(await Entity.count({ where: { entity_type: 'seed' } }));
  return counts;
});
await step('commit', () => sequelize.transaction(async (t) => {
  await create('committed', t);
  await rolledBack(() => sequelize.transaction({ transaction: t }, async (sp) => {
    await create('savepoint', sp);
    throw new Rollback();
  }));
}));
await step('rollback', () => rolledBack(() => sequelize.transaction(
  { isolationLevel: Transaction.ISOLATION_LEVELS.SERIALIZABLE },
  async (t) => {
    await create('rolledback', t);
    throw new Rollback();
  },
)));
summary.error_code = await step('error', () => duplicateKeyCode(() => sequelize.transaction(async (t) => {
  await create('failed', t);
  await create('duplicate', t, { id: s.seedID });
})));
await step('after', async () => {
  summary.tenant_after_error = await showTenant();
  summary.names = (await Entity.findAll({ where: { entity_type: 'compat' }, order: [['name', 'ASC']] })).map((e) => e.name);
  summary.visible = (await Entity.findAll({
    attributes: [[sequelize.fn('DISTINCT', sequelize.col('tenant_id')), 'tenant_id']], order: [['tenant_id', 'ASC']], raw: true,
  })).map((r) => r.tenant_id);
});
await step('close', () => sequelize.close());
report(summary);
