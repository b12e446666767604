package lockdown

// Views are pg_catalog views whose SELECT is revoked from PUBLIC: each shows what a revoked
// function shows (a view runs its functions with the reader's privileges, so most would fail
// anyway; revoking the view says so plainly and lets the lint check it). Views absent from a
// server are skipped.
var Views = []string{
	// other sessions, and this backend's statements and cursors (which, pooled, belong to other
	// clients)
	"pg_stat_activity", "pg_stat_ssl", "pg_stat_gssapi", "pg_locks",
	"pg_prepared_statements", "pg_cursors", "pg_prepared_xacts",
	"pg_stat_progress_analyze", "pg_stat_progress_basebackup", "pg_stat_progress_cluster",
	"pg_stat_progress_copy", "pg_stat_progress_create_index", "pg_stat_progress_vacuum",
	// activity counters
	"pg_stat_all_tables", "pg_stat_sys_tables", "pg_stat_user_tables",
	"pg_stat_all_indexes", "pg_stat_sys_indexes", "pg_stat_user_indexes",
	"pg_statio_all_tables", "pg_statio_sys_tables", "pg_statio_user_tables",
	"pg_statio_all_indexes", "pg_statio_sys_indexes", "pg_statio_user_indexes",
	"pg_statio_all_sequences", "pg_statio_sys_sequences", "pg_statio_user_sequences",
	"pg_stat_user_functions", "pg_stat_database", "pg_stat_database_conflicts",
	"pg_stat_archiver", "pg_stat_bgwriter", "pg_stat_checkpointer", "pg_stat_io", "pg_stat_wal",
	"pg_stat_slru", "pg_stat_recovery_prefetch",
	// replication
	"pg_replication_slots", "pg_stat_replication", "pg_stat_replication_slots",
	"pg_stat_wal_receiver", "pg_stat_subscription", "pg_stat_subscription_stats",
}

// Languages are procedural languages the app role may not use: with USAGE it could run DO
// blocks, which build and run SQL the guard never sees.
var Languages = []string{"plpgsql"}
