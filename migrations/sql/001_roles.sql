-- Two roles, cluster-wide, so created only when missing.
--   owner: owns the schema, its tables and functions; never logs in.
--   app:   the role tenantproxy opens backend sessions as. It can read and write rows, and that is
--          all: it cannot bypass row-level security, create anything, or become the owner.
-- Roles are shared by every database of the cluster: a lock on pg_authid (a shared catalog, so a
-- cluster-wide lock) keeps two databases migrating at once from racing to create them.
LOCK TABLE pg_catalog.pg_authid IN SHARE ROW EXCLUSIVE MODE;

DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {{.ownerLiteral}}) THEN
		CREATE ROLE {{.owner}};
	END IF;
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {{.appLiteral}}) THEN
		CREATE ROLE {{.app}};
	END IF;
END
$roles$;

ALTER ROLE {{.owner}} NOLOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION;
ALTER ROLE {{.app}} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT;
REVOKE {{.owner}} FROM {{.app}};
