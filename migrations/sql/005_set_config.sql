-- set_config for the app role, without the tenant context. pg_catalog.set_config stays revoked
-- from the app role (the lockdown); pg_dump and ORMs call set_config, and the proxy's SQL guard
-- rewrites every such call to this function, which refuses what the proxy keeps to itself: the
-- namespace of the tenant context, the session's identity, and the settings that change how the
-- server reads a statement (the guard must read it the same way). It then calls set_config as
-- its owner, who alone is granted it.
CREATE SCHEMA IF NOT EXISTS tenantproxy AUTHORIZATION {{.owner}};
REVOKE ALL ON SCHEMA tenantproxy FROM PUBLIC;
GRANT USAGE ON SCHEMA tenantproxy TO {{.app}};
GRANT EXECUTE ON FUNCTION pg_catalog.set_config(text, text, boolean) TO {{.owner}};

CREATE OR REPLACE FUNCTION tenantproxy.set_config(setting_name text, new_value text, is_local boolean)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $set_config$
DECLARE
	-- The server finds a setting by its name with ASCII letters in any case.
	folded text := pg_catalog.lower(setting_name COLLATE "C");
BEGIN
	IF pg_catalog.starts_with(folded, {{.reservedPrefixLiteral}})
		OR folded = ANY (ARRAY['role', 'session_authorization', 'standard_conforming_strings', 'client_encoding']) THEN
		RAISE EXCEPTION 'tenantproxy: set_config of "%" is refused: the tenant context, the session''s identity and how the server reads statements are set by the proxy', setting_name
			USING ERRCODE = '42501';
	END IF;
	RETURN pg_catalog.set_config(setting_name, new_value, is_local);
END
$set_config$;

ALTER FUNCTION tenantproxy.set_config(text, text, boolean) OWNER TO {{.owner}};
REVOKE ALL ON FUNCTION tenantproxy.set_config(text, text, boolean) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantproxy.set_config(text, text, boolean) TO {{.app}};
