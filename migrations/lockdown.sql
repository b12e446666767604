-- The database lockdown: no path is left to the app role that runs a query string, changes a
-- setting by function, reads the server's files, reaches a channel shared by every tenant, or
-- shows another session's work or transactions. Then a SET or RESET statement, which the
-- proxy's guard inspects, is the only way to touch the tenant context. The lists, and the review
-- of every function the app role may still execute, live in the Go lockdown package, which
-- `tenantproxy check` verifies against.
--
-- It is not a versioned migration: `migrate up` applies it on every run, so the lockdown always
-- matches the binary's lists, and a database copied from a template (which does not inherit
-- database-level privileges) gets it too. Every statement is idempotent.
--
-- Privileges on pg_catalog functions and views belong to each database: this changes only the
-- database being migrated.
DO $lockdown$
DECLARE
	f regprocedure;
	v text;
BEGIN
	FOR f IN
		SELECT p.oid::regprocedure FROM pg_catalog.pg_proc p
		WHERE p.pronamespace = 'pg_catalog'::regnamespace
		  AND p.proname = ANY ({{.lockdownFunctions}})
	LOOP
		EXECUTE format('REVOKE EXECUTE ON FUNCTION %s FROM PUBLIC', f);
	END LOOP;

	FOREACH v IN ARRAY {{.lockdownViews}} LOOP
		IF to_regclass('pg_catalog.' || quote_ident(v)) IS NOT NULL THEN
			EXECUTE format('REVOKE ALL ON pg_catalog.%I FROM PUBLIC', v);
		END IF;
	END LOOP;

	-- Temporary objects could shadow the shared tables; new schemas could hold functions.
	EXECUTE format('REVOKE CREATE, TEMPORARY ON DATABASE %I FROM PUBLIC', current_database());
	EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), {{.appLiteral}});
	EXECUTE format('GRANT CONNECT ON DATABASE %I TO %I', current_database(), {{.directoryRoleLiteral}});
END
$lockdown$;

-- pg_settings accepts UPDATE, which calls set_config.
REVOKE UPDATE ON pg_catalog.pg_settings FROM PUBLIC;
REVOKE CREATE ON SCHEMA public FROM PUBLIC;
{{range .lockdownLanguages}}
REVOKE USAGE ON LANGUAGE {{.}} FROM PUBLIC;
{{- end}}
