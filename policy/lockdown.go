package policy

// The lockdown is what the database itself takes away from the app role, so that the SQL guard
// is not the only wall: with it, a SET or RESET statement (which the guard sees) is the only way
// left to change the tenant context, and nothing a session does is visible to another session.
// Migrations apply it; `tenantproxy check` verifies it.

// LockdownFunctions are pg_catalog functions revoked from PUBLIC, every overload. Each one runs a
// query string, changes a setting, reads or acts on other sessions, or keeps data outside
// row-level security (large objects, notification channels).
var LockdownFunctions = []string{
	// changes a setting by function: the tenant context itself
	"set_config",
	// run a query string
	"query_to_xml", "query_to_xmlschema", "query_to_xml_and_xmlschema",
	"cursor_to_xml", "cursor_to_xmlschema",
	"table_to_xml", "table_to_xmlschema", "table_to_xml_and_xmlschema",
	"schema_to_xml", "schema_to_xmlschema", "schema_to_xml_and_xmlschema",
	"database_to_xml", "database_to_xmlschema", "database_to_xml_and_xmlschema",
	"ts_stat", "ts_rewrite",
	// other sessions: their queries, locks, prepared statements, and signals to them
	"pg_stat_get_activity", "pg_stat_get_progress_info", "pg_stat_get_backend_idset",
	"pg_stat_get_backend_pid", "pg_stat_get_backend_dbid", "pg_stat_get_backend_userid",
	"pg_stat_get_backend_activity", "pg_stat_get_backend_wait_event_type",
	"pg_stat_get_backend_wait_event", "pg_stat_get_backend_activity_start",
	"pg_stat_get_backend_xact_start", "pg_stat_get_backend_start",
	"pg_stat_get_backend_client_addr", "pg_stat_get_backend_client_port",
	"pg_lock_status", "pg_blocking_pids", "pg_safe_snapshot_blocking_pids",
	"pg_prepared_statement", "pg_cursor", "pg_prepared_xact",
	"pg_cancel_backend", "pg_terminate_backend",
	// channels shared by every tenant of the database
	"pg_notify",
	"lo_open", "lo_close", "loread", "lowrite", "lo_lseek", "lo_lseek64", "lo_tell", "lo_tell64",
	"lo_truncate", "lo_truncate64", "lo_creat", "lo_create", "lo_unlink", "lo_import", "lo_export",
	"lo_from_bytea", "lo_get", "lo_put",
}

// LockdownViews are pg_catalog views whose SELECT is revoked from PUBLIC: they show other
// sessions (which all share the app role, so Postgres would show their query text) or this
// backend's prepared statements and cursors (which, pooled, belong to other clients).
var LockdownViews = []string{
	"pg_stat_activity", "pg_stat_ssl", "pg_stat_gssapi", "pg_locks",
	"pg_prepared_statements", "pg_cursors", "pg_prepared_xacts",
	"pg_stat_progress_analyze", "pg_stat_progress_basebackup", "pg_stat_progress_cluster",
	"pg_stat_progress_copy", "pg_stat_progress_create_index", "pg_stat_progress_vacuum",
}

// LockdownLanguages are procedural languages the app role may not use: with USAGE it could run DO
// blocks, which build and run SQL the guard never sees.
var LockdownLanguages = []string{"plpgsql"}
