-- Notification channels of each tenant's own. Channels are shared by the whole database; the
-- proxy maps the names of a client's LISTEN, UNLISTEN and NOTIFY onto its tenant's (a prefix:
-- lockdown.ChannelPrefix), and its SQL guard rewrites every pg_notify call to this function, which
-- does the same from the session's tenant context. pg_catalog.pg_notify stays revoked from the
-- app role (the lockdown).
GRANT EXECUTE ON FUNCTION pg_catalog.pg_notify(text, text) TO {{.owner}};

CREATE OR REPLACE FUNCTION tenantproxy.pg_notify(channel text, payload text)
RETURNS void
LANGUAGE plpgsql SECURITY DEFINER SET search_path = pg_catalog, pg_temp
AS $pg_notify$
DECLARE
	tenant text := pg_catalog.current_setting({{.settingLiteral}}, true);
BEGIN
	IF tenant IS NULL OR tenant = '' THEN
		RAISE EXCEPTION 'tenantproxy: pg_notify needs a tenant context' USING ERRCODE = '42501';
	END IF;
	IF pg_catalog.octet_length(channel) > 45 THEN
		RAISE EXCEPTION 'tenantproxy: channel name "%" is too long: at most 45 bytes', channel USING ERRCODE = '42622';
	END IF;
	PERFORM pg_catalog.pg_notify('t' || pg_catalog.left(pg_catalog.encode(pg_catalog.sha256(pg_catalog.convert_to(tenant, 'UTF8')), 'hex'), 16) || '_' || channel, payload);
END
$pg_notify$;

ALTER FUNCTION tenantproxy.pg_notify(text, text) OWNER TO {{.owner}};
REVOKE ALL ON FUNCTION tenantproxy.pg_notify(text, text) FROM PUBLIC;
GRANT EXECUTE ON FUNCTION tenantproxy.pg_notify(text, text) TO {{.app}};
