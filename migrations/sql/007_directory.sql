-- The tenant directory: the proxy's users kept in the database, so that adding, changing or
-- removing one needs no restart (`tenantproxy user ...` writes it, the directory package reads it).
--
-- One directory per database, shared by every tenant schema migrated into it. This migration runs
-- once per tenant schema, so every statement here is idempotent; an advisory lock keeps two
-- schemas migrating at once from racing to create it.
--
-- Who may read it: the directory role, which can read this schema and nothing else. Never the app
-- role: a verifier lets whoever holds it pose as the proxy to that user and try passwords offline.
-- Writes come from a superuser (the admin URL given to the commands).
SELECT pg_catalog.pg_advisory_xact_lock(pg_catalog.hashtext('tenantproxy_directory'));

-- The role is cluster-wide: created only when missing, under the same lock as 001's roles.
LOCK TABLE pg_catalog.pg_authid IN SHARE ROW EXCLUSIVE MODE;
DO $roles$
BEGIN
	IF NOT EXISTS (SELECT FROM pg_catalog.pg_roles WHERE rolname = {{.directoryRoleLiteral}}) THEN
		CREATE ROLE {{.directoryRole}};
	END IF;
END
$roles$;
ALTER ROLE {{.directoryRole}} LOGIN NOSUPERUSER NOBYPASSRLS NOCREATEDB NOCREATEROLE NOREPLICATION NOINHERIT;
REVOKE {{.owner}} FROM {{.directoryRole}};

CREATE SCHEMA IF NOT EXISTS {{.directory}} AUTHORIZATION {{.owner}};
REVOKE ALL ON SCHEMA {{.directory}} FROM PUBLIC;
GRANT USAGE ON SCHEMA {{.directory}} TO {{.directoryRole}};

SET LOCAL ROLE {{.owner}};

-- The rules are config.ValidUser's and config.ValidTenant's.
CREATE OR REPLACE FUNCTION {{.directory}}.valid_tenants(tenants text[]) RETURNS boolean
LANGUAGE sql IMMUTABLE STRICT SET search_path = pg_catalog, pg_temp AS $fn$
	SELECT coalesce(bool_and(coalesce(t ~ '^[A-Za-z0-9][A-Za-z0-9_.@:-]{0,62}$', false)), false)
	FROM unnest(tenants) t
$fn$;

-- One row per user. A user has one tenant (tenant) or a choice (tenants, with an optional
-- default_tenant), as in the config file.
CREATE TABLE IF NOT EXISTS {{.directory}}.users (
	name            text        PRIMARY KEY
		CONSTRAINT users_name_valid CHECK (name ~ '^[A-Za-z0-9_][A-Za-z0-9_.@-]{0,62}$'),
	verifier        text        NOT NULL
		CONSTRAINT users_verifier_scram CHECK (verifier LIKE 'SCRAM-SHA-256$%'),
	tenant          text
		CONSTRAINT users_tenant_valid CHECK (tenant IS NULL OR {{.directory}}.valid_tenants(ARRAY[tenant])),
	tenants         text[]
		CONSTRAINT users_tenants_valid CHECK (array_ndims(tenants) = 1 AND {{.directory}}.valid_tenants(tenants)),
	default_tenant  text,
	max_connections integer
		CONSTRAINT users_max_connections_positive CHECK (max_connections > 0),
	disabled        boolean     NOT NULL DEFAULT false,
	created_at      timestamptz NOT NULL DEFAULT now(),
	updated_at      timestamptz NOT NULL DEFAULT now(),
	CONSTRAINT users_tenant_or_tenants CHECK ((tenant IS NULL) <> (tenants IS NULL)),
	CONSTRAINT users_default_among_tenants CHECK (default_tenant IS NULL OR coalesce(default_tenant = ANY (tenants), false))
);

-- The change log every proxy instance polls: a row per user added, changed or removed. A version
-- becomes visible only after every smaller one (see lock_user_changes), so a reader that has
-- seen version v has seen everything up to v.
CREATE TABLE IF NOT EXISTS {{.directory}}.user_changes (
	version    bigserial   PRIMARY KEY,
	name       text        NOT NULL,
	changed_at timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX IF NOT EXISTS user_changes_changed_at ON {{.directory}}.user_changes (changed_at);

RESET ROLE;

-- The two trigger functions that write the log run as the owner (SECURITY DEFINER), which owns
-- it, so a role granted writes on users alone is logged like a superuser.
--
-- Before each writing statement: one writer at a time until it commits, so versions are taken
-- and become visible in the same order (a version taken early but committed late would be
-- skipped by a reader already past it). Then prune the log: rows older than a day go, but never
-- the newest, so a reader can tell a pruned gap from no change at all.
CREATE OR REPLACE FUNCTION {{.directory}}.lock_user_changes() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
	LOCK TABLE {{.directory}}.user_changes IN EXCLUSIVE MODE;
	DELETE FROM {{.directory}}.user_changes
	WHERE changed_at < now() - interval '1 day'
	  AND version < (SELECT max(version) FROM {{.directory}}.user_changes);
	RETURN NULL;
END
$fn$;

-- After each row: log the names it touched (both, when a user is renamed).
CREATE OR REPLACE FUNCTION {{.directory}}.log_user_change() RETURNS trigger
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
	IF TG_OP IN ('UPDATE', 'DELETE') THEN
		INSERT INTO {{.directory}}.user_changes (name) VALUES (OLD.name);
	END IF;
	IF TG_OP = 'INSERT' OR (TG_OP = 'UPDATE' AND NEW.name <> OLD.name) THEN
		INSERT INTO {{.directory}}.user_changes (name) VALUES (NEW.name);
	END IF;
	RETURN NULL;
END
$fn$;

-- TRUNCATE fires no row triggers, so it would remove users without telling any proxy.
CREATE OR REPLACE FUNCTION {{.directory}}.refuse_truncate() RETURNS trigger
LANGUAGE plpgsql SET search_path = pg_catalog, pg_temp AS $fn$
BEGIN
	RAISE EXCEPTION 'TRUNCATE of the tenant directory is refused: running proxies would not see the users go'
		USING ERRCODE = 'feature_not_supported', HINT = 'Use DELETE, or tenantproxy user remove.';
END
$fn$;

ALTER FUNCTION {{.directory}}.lock_user_changes() OWNER TO {{.owner}};
ALTER FUNCTION {{.directory}}.log_user_change() OWNER TO {{.owner}};
ALTER FUNCTION {{.directory}}.refuse_truncate() OWNER TO {{.owner}};
REVOKE ALL ON FUNCTION {{.directory}}.lock_user_changes(), {{.directory}}.log_user_change(),
	{{.directory}}.refuse_truncate() FROM PUBLIC;

DROP TRIGGER IF EXISTS users_lock_changes ON {{.directory}}.users;
CREATE TRIGGER users_lock_changes BEFORE INSERT OR UPDATE OR DELETE ON {{.directory}}.users
	FOR EACH STATEMENT EXECUTE FUNCTION {{.directory}}.lock_user_changes();
DROP TRIGGER IF EXISTS users_log_changes ON {{.directory}}.users;
CREATE TRIGGER users_log_changes AFTER INSERT OR UPDATE OR DELETE ON {{.directory}}.users
	FOR EACH ROW EXECUTE FUNCTION {{.directory}}.log_user_change();
DROP TRIGGER IF EXISTS users_refuse_truncate ON {{.directory}}.users;
CREATE TRIGGER users_refuse_truncate BEFORE TRUNCATE ON {{.directory}}.users
	FOR EACH STATEMENT EXECUTE FUNCTION {{.directory}}.refuse_truncate();

GRANT SELECT ON {{.directory}}.users, {{.directory}}.user_changes TO {{.directoryRole}};
