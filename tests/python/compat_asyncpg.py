"""asyncpg and its pool, with their defaults: the compatibility scenario of compat/.

   python3 compat_asyncpg.py          (settings: see compat_common.py)
"""
import asyncio
import uuid

from compat_common import (DATABASE, HOST, PASSWORD, PORT, SEED_ID, TENANT, USER, Rollback,
                           need, report, sqlstate, step)

try:
    import asyncpg
except ImportError:
    need("python3-asyncpg")

INSERT = "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES ($1, 'compat', $2)"


async def main():
    summary = {"client": f"asyncpg {asyncpg.__version__}"}
    with step("connect"):
        pool = await asyncpg.create_pool(host=HOST, port=PORT, user=USER, password=PASSWORD,
                                         database=DATABASE)
    with step("tenant"):
        async with pool.acquire() as c:
            summary["tenant"] = await c.fetchval("SHOW app.current_tenant_id")
    with step("reads"):
        async with pool.acquire() as c:
            summary["reads"] = [
                await c.fetchval("SELECT count(*) FROM llmspell.entities WHERE entity_type = $1", "seed")
                for _ in range(10)
            ]
    with step("commit"):
        async with pool.acquire() as c, c.transaction():
            await c.execute(INSERT, TENANT, f"{TENANT}-committed")
            try:
                async with c.transaction():
                    await c.execute(INSERT, TENANT, f"{TENANT}-savepoint")
                    raise Rollback
            except Rollback:
                pass
    with step("rollback"):
        async with pool.acquire() as c:
            try:
                async with c.transaction(isolation="serializable"):
                    await c.execute(INSERT, TENANT, f"{TENANT}-rolledback")
                    raise Rollback
            except Rollback:
                pass
    with step("error"):
        async with pool.acquire() as c:
            try:
                async with c.transaction():
                    await c.execute(INSERT, TENANT, f"{TENANT}-failed")
                    await c.execute(
                        "INSERT INTO llmspell.entities (tenant_id, id, entity_type, name) VALUES ($1, $2, 'compat', $3)",
                        TENANT, uuid.UUID(SEED_ID), f"{TENANT}-duplicate")
                raise RuntimeError("a duplicate key was accepted")
            except asyncpg.UniqueViolationError as e:
                summary["error_code"] = sqlstate(e)
    with step("after"):
        async with pool.acquire() as c:
            summary["tenant_after_error"] = await c.fetchval("SHOW app.current_tenant_id")
            rows = await c.fetch("SELECT name FROM llmspell.entities WHERE entity_type = $1 ORDER BY name", "compat")
            summary["names"] = [r[0] for r in rows]
            rows = await c.fetch("SELECT DISTINCT tenant_id FROM llmspell.entities ORDER BY 1")
            summary["visible"] = [r[0] for r in rows]
    with step("close"):
        await pool.close()
    report(summary)


asyncio.run(main())
