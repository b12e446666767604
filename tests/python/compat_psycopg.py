"""psycopg 3 and psycopg_pool, with their defaults: the compatibility scenario of compat/.

   python3 compat_psycopg.py          (settings: see compat_common.py)
"""
from compat_common import (DATABASE, HOST, PASSWORD, PORT, SEED_ID, TENANT, USER, Rollback, need,
                           report, sqlstate, step)

try:
    import psycopg
    from psycopg import IsolationLevel
except ImportError:
    need("python3-psycopg")
try:
    from psycopg_pool import ConnectionPool
except ImportError:
    need("python3-psycopg-pool")

INSERT = "INSERT INTO llmspell.entities (tenant_id, entity_type, name) VALUES (%s, 'compat', %s)"
INSERT_WITH_ID = ("INSERT INTO llmspell.entities (tenant_id, id, entity_type, name) "
                  "VALUES (%s, %s, 'compat', %s)")


def main():
    summary = {"client": f"psycopg {psycopg.__version__} with psycopg_pool"}
    with step("connect"):
        conninfo = psycopg.conninfo.make_conninfo(host=HOST, port=PORT, user=USER, password=PASSWORD,
                                                  dbname=DATABASE)
        pool = ConnectionPool(conninfo)
        pool.wait()
    with step("tenant"), pool.connection() as c:
        summary["tenant"] = c.execute("SHOW app.current_tenant_id").fetchone()[0]
    # One connection, ten executions: psycopg prepares on the server from the fifth.
    with step("reads"), pool.connection() as c:
        summary["reads"] = [
            c.execute("SELECT count(*) FROM llmspell.entities WHERE entity_type = %s", ("seed",)).fetchone()[0]
            for _ in range(10)
        ]
    # More statements than psycopg keeps prepared (100): it lets the oldest go with DEALLOCATE,
    # sent through the extended protocol.
    with step("statement cache"), pool.connection() as c:
        for i in range(c.prepared_max + 5):
            for _ in range(c.prepare_threshold + 1):
                got = c.execute(f"SELECT {i} + %s::int", (1,)).fetchone()[0]
                if got != i + 1:
                    raise RuntimeError(f"SELECT {i} + 1 gave {got}")
    with step("commit"), pool.connection() as c, c.transaction():
        c.execute(INSERT, (TENANT, f"{TENANT}-committed"))
        try:
            with c.transaction():
                c.execute(INSERT, (TENANT, f"{TENANT}-savepoint"))
                raise Rollback
        except Rollback:
            pass
    with step("rollback"), pool.connection() as c:
        c.isolation_level = IsolationLevel.SERIALIZABLE
        with c.transaction(force_rollback=True):
            c.execute(INSERT, (TENANT, f"{TENANT}-rolledback"))
        c.isolation_level = None
    with step("error"), pool.connection() as c:
        try:
            with c.transaction():
                c.execute(INSERT, (TENANT, f"{TENANT}-failed"))
                c.execute(INSERT_WITH_ID, (TENANT, SEED_ID, f"{TENANT}-duplicate"))
            raise RuntimeError("a duplicate key was accepted")
        except psycopg.errors.UniqueViolation as e:
            summary["error_code"] = sqlstate(e)
    with step("after"), pool.connection() as c:
        summary["tenant_after_error"] = c.execute("SHOW app.current_tenant_id").fetchone()[0]
        rows = c.execute("SELECT name FROM llmspell.entities WHERE entity_type = %s ORDER BY name", ("compat",))
        summary["names"] = [r[0] for r in rows]
        rows = c.execute("SELECT DISTINCT tenant_id FROM llmspell.entities ORDER BY 1")
        summary["visible"] = [r[0] for r in rows]
    with step("close"):
        pool.close()
    report(summary)


main()
