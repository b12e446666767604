-- tenantproxy.set_config without a SET clause. A function's SET search_path clause makes the
-- effect of a transaction-level set of that setting inside it end when the function returns,
-- so set_config('search_path', x, true) did nothing. Without the clause the function runs
-- under the caller's search_path, so every name in it is qualified: functions, the operator,
-- the collation and the variable's type, none of which a schema the caller puts first can
-- replace.
CREATE OR REPLACE FUNCTION tenantproxy.set_config(setting_name text, new_value text, is_local boolean)
RETURNS text
LANGUAGE plpgsql SECURITY DEFINER
AS $set_config$
DECLARE
	-- The server finds a setting by its name with ASCII letters in any case.
	folded pg_catalog.text := pg_catalog.lower(setting_name COLLATE pg_catalog."C");
BEGIN
	IF pg_catalog.starts_with(folded, {{.reservedPrefixLiteral}})
		OR folded OPERATOR(pg_catalog.=) ANY (ARRAY['role', 'session_authorization', 'standard_conforming_strings', 'client_encoding']) THEN
		RAISE EXCEPTION 'tenantproxy: set_config of "%" is refused: the tenant context, the session''s identity and how the server reads statements are set by the proxy', setting_name
			USING ERRCODE = '42501';
	END IF;
	RETURN pg_catalog.set_config(setting_name, new_value, is_local);
END
$set_config$;
