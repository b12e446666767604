// What the compatibility programs share: settings, steps, the summary.
//
// Settings come from COMPAT_HOST, COMPAT_PORT, COMPAT_USER, COMPAT_PASSWORD, COMPAT_DATABASE,
// COMPAT_TENANT and COMPAT_SEED_ID (an entity of the tenant, used to provoke a duplicate key).
// A program prints one JSON summary; on a failure it prints the step, SQLSTATE and message and
// exits 1.
import { readFileSync } from 'node:fs';

function env(name) {
  const v = process.env[name];
  if (v === undefined) throw new Error(`${name} is not set`);
  return v;
}

export const settings = {
  host: env('COMPAT_HOST'),
  port: Number(env('COMPAT_PORT')),
  user: env('COMPAT_USER'),
  password: env('COMPAT_PASSWORD'),
  database: env('COMPAT_DATABASE'),
  tenant: env('COMPAT_TENANT'),
  seedID: env('COMPAT_SEED_ID'),
};

// packageVersion is the installed version of a package of tests/node.
export function packageVersion(name) {
  return JSON.parse(readFileSync(new URL(`./node_modules/${name}/package.json`, import.meta.url))).version;
}

// Rollback is thrown to leave a transaction block by rolling it back.
export class Rollback extends Error {}

// load imports a package of tests/node, or stops saying how to install it.
export async function load(name) {
  try {
    return await import(name);
  } catch (e) {
    console.error(`${name} is missing (${e.message}): run scripts/drivers-deps to install the packages of tests/node`);
    process.exit(1);
  }
}

// sqlstate is the SQLSTATE of the PostgreSQL error behind e, if any.
export function sqlstate(e) {
  for (let x = e; x; x = x.parent || x.original || x.driverError || x.cause) {
    if (typeof x.code === 'string' && /^[0-9A-Z]{5}$/.test(x.code)) return x.code;
  }
  return null;
}

export async function step(name, fn) {
  try {
    return await fn();
  } catch (e) {
    const state = sqlstate(e);
    console.error(`step ${name} failed: ${state ? `SQLSTATE ${state}: ` : ''}${e.stack || e}`);
    process.exit(1);
  }
}

// rolledBack runs fn, which must end by throwing Rollback.
export async function rolledBack(fn) {
  try {
    await fn();
  } catch (e) {
    if (e instanceof Rollback) return;
    throw e;
  }
  throw new Error('the block was not rolled back');
}

// duplicateKeyCode runs fn, which must fail on a duplicate key, and returns the SQLSTATE.
export async function duplicateKeyCode(fn) {
  try {
    await fn();
  } catch (e) {
    const state = sqlstate(e);
    if (state) return state;
    throw e;
  }
  throw new Error('a duplicate key was accepted');
}

export function report(summary) {
  console.log(JSON.stringify(summary));
}
