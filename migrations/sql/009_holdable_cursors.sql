-- How many WITH HOLD cursors the calling session has open. In transaction pooling the proxy keeps
-- a client's backend while it has some, and asks this function each time the backend falls idle.
-- pg_cursors stays revoked from the app role (the lockdown); this runs as the owner, in the
-- caller's own session, and says nothing but the count of the session's own holdable cursors.
GRANT SELECT ON pg_catalog.pg_cursors TO {{.owner}};
GRANT EXECUTE ON FUNCTION pg_catalog.pg_cursor() TO {{.owner}};

CREATE OR REPLACE FUNCTION tenantproxy.holdable_cursors()
RETURNS bigint
LANGUAGE sql STABLE SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $$ SELECT count(*) FROM pg_catalog.pg_cursors WHERE is_holdable $$;

ALTER FUNCTION tenantproxy.holdable_cursors() OWNER TO {{.owner}};
REVOKE ALL ON FUNCTION tenantproxy.holdable_cursors() FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantproxy.holdable_cursors() TO {{.app}};
