"""Django's ORM on its PostgreSQL backend (psycopg2), with Django's default settings: the
compatibility scenario of compat/.

   python3 compat_django.py           (settings: see compat_common.py)
"""
import uuid

from compat_common import (DATABASE, HOST, PASSWORD, PORT, SEED_ID, TENANT, USER, Rollback, need,
                           report, sqlstate, step)

try:
    import django
    from django.conf import settings
except ImportError:
    need("python3-django")
try:
    import psycopg2
except ImportError:
    need("python3-psycopg2")

settings.configure(DATABASES={"default": {
    "ENGINE": "django.db.backends.postgresql", "NAME": DATABASE, "USER": USER,
    "PASSWORD": PASSWORD, "HOST": HOST, "PORT": PORT,
}})
django.setup()

from django.db import IntegrityError, connection, models, transaction  # noqa: E402


class Entity(models.Model):
    # The key is (tenant_id, id); Django wants one column, and id is unique within a tenant.
    id = models.UUIDField(primary_key=True, default=uuid.uuid4)
    tenant_id = models.TextField()
    entity_type = models.TextField()
    name = models.TextField()

    class Meta:
        app_label = "compat"
        managed = False
        db_table = 'llmspell"."entities'


def create(name, **kw):
    Entity.objects.create(tenant_id=TENANT, entity_type="compat", name=f"{TENANT}-{name}", **kw)


def show_tenant():
    with connection.cursor() as c:
        c.execute("SHOW app.current_tenant_id")
        return c.fetchone()[0]


def main():
    summary = {"client": f"Django {django.get_version()} with psycopg2 {psycopg2.__version__.split()[0]}"}
    with step("connect"):
        connection.ensure_connection()
    with step("tenant"):
        summary["tenant"] = show_tenant()
    with step("reads"):
        summary["reads"] = [Entity.objects.filter(entity_type="seed").count() for _ in range(10)]
    # iterator() reads through a server-side cursor, WITH HOLD outside a transaction.
    with step("iterator"):
        seen = sum(1 for _ in Entity.objects.filter(entity_type="seed").iterator(chunk_size=2))
        if seen != summary["reads"][0]:
            raise RuntimeError(f"iterator() gave {seen} rows, count() {summary['reads'][0]}")
    with step("commit"), transaction.atomic():
        create("committed")
        try:
            with transaction.atomic():
                create("savepoint")
                raise Rollback
        except Rollback:
            pass
    with step("rollback"), transaction.atomic():
        with connection.cursor() as c:
            c.execute("SET TRANSACTION ISOLATION LEVEL SERIALIZABLE")
        create("rolledback")
        transaction.set_rollback(True)
    with step("error"):
        try:
            with transaction.atomic():
                create("failed")
                create("duplicate", id=uuid.UUID(SEED_ID))
            raise RuntimeError("a duplicate key was accepted")
        except IntegrityError as e:
            summary["error_code"] = sqlstate(e)
    with step("after"):
        summary["tenant_after_error"] = show_tenant()
        names = Entity.objects.filter(entity_type="compat").order_by("name").values_list("name", flat=True)
        summary["names"] = list(names)
        tenants = Entity.objects.order_by("tenant_id").values_list("tenant_id", flat=True).distinct()
        summary["visible"] = list(tenants)
    with step("close"):
        connection.close()
    report(summary)


main()
