"""SQLAlchemy's ORM on its default PostgreSQL driver (psycopg2) and its default pool: the
compatibility scenario of compat/.

   python3 compat_sqlalchemy.py       (settings: see compat_common.py)
"""
from compat_common import (DATABASE, HOST, PASSWORD, PORT, SEED_ID, TENANT, USER, need, report,
                           sqlstate, step)

try:
    import sqlalchemy
    from sqlalchemy import Column, Text, create_engine, func, select, text
    from sqlalchemy.dialects.postgresql import UUID
    from sqlalchemy.engine import URL
    from sqlalchemy.exc import IntegrityError
    from sqlalchemy.orm import Session, declarative_base
except ImportError:
    need("python3-sqlalchemy")
try:
    import psycopg2
except ImportError:
    need("python3-psycopg2")

Base = declarative_base()


class Entity(Base):
    __tablename__ = "entities"
    __table_args__ = {"schema": "llmspell"}
    tenant_id = Column(Text, primary_key=True)
    id = Column(UUID(as_uuid=False), primary_key=True, server_default=text("gen_random_uuid()"))
    entity_type = Column(Text, nullable=False)
    name = Column(Text, nullable=False)


def entity(name, **kw):
    return Entity(tenant_id=TENANT, entity_type="compat", name=f"{TENANT}-{name}", **kw)


def main():
    summary = {"client": f"SQLAlchemy {sqlalchemy.__version__} with psycopg2 {psycopg2.__version__.split()[0]}"}
    with step("connect"):
        engine = create_engine(URL.create("postgresql", username=USER, password=PASSWORD, host=HOST,
                                          port=PORT, database=DATABASE))
    with step("tenant"), Session(engine) as s:
        summary["tenant"] = s.execute(text("SHOW app.current_tenant_id")).scalar()
    with step("reads"), Session(engine) as s:
        query = select(func.count()).select_from(Entity).where(Entity.entity_type == "seed")
        summary["reads"] = [s.execute(query).scalar() for _ in range(10)]
    with step("commit"), Session(engine) as s, s.begin():
        s.add(entity("committed"))
        s.flush()
        savepoint = s.begin_nested()
        s.add(entity("savepoint"))
        s.flush()
        savepoint.rollback()
    with step("rollback"), Session(engine.execution_options(isolation_level="SERIALIZABLE")) as s:
        s.add(entity("rolledback"))
        s.flush()
        s.rollback()
    with step("error"):
        try:
            with Session(engine) as s, s.begin():
                s.add(entity("failed"))
                s.flush()
                s.add(entity("duplicate", id=SEED_ID))
            raise RuntimeError("a duplicate key was accepted")
        except IntegrityError as e:
            summary["error_code"] = sqlstate(e)
    with step("after"), Session(engine) as s:
        summary["tenant_after_error"] = s.execute(text("SHOW app.current_tenant_id")).scalar()
        summary["names"] = list(s.scalars(select(Entity.name).where(Entity.entity_type == "compat").order_by(Entity.name)))
        summary["visible"] = list(s.scalars(select(Entity.tenant_id).distinct().order_by(Entity.tenant_id)))
    with step("close"):
        engine.dispose()
    report(summary)


main()
