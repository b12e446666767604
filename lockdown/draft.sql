-- The first draft of the review: every function tenantproxy_app may execute, with the group the
-- catalog suggests for it, as "group|signature". The groups are a starting point, not a verdict:
-- review.txt says how to read and correct them. Run it as a superuser on a migrated database,
-- with search_path = pg_catalog so signatures print as review.txt writes them:
--
--   PGOPTIONS='-c search_path=pg_catalog' psql -XAt -f lockdown/draft.sql postgres://...
--
-- A function goes to the first group whose test it passes; "review-by-hand" means none fits (on
-- PostgreSQL 15 they are the session-dependent values, and pg_mcv_list_items, which is pure).
WITH fn AS (
	SELECT p.*, p.oid::regprocedure::text AS signature,
		(SELECT e.extname FROM pg_depend d JOIN pg_extension e ON e.oid = d.refobjid
		 WHERE d.classid = 'pg_proc'::regclass AND d.objid = p.oid
		   AND d.refclassid = 'pg_extension'::regclass AND d.deptype = 'e') AS extension
	FROM pg_proc p
	WHERE has_function_privilege('tenantproxy_app', p.oid, 'EXECUTE')
)
SELECT CASE
	WHEN extension IS NOT NULL AND extension <> 'plpgsql' THEN 'extension-' || extension
	WHEN 'internal'::regtype = ANY (proargtypes) THEN 'internal-argument'
	WHEN oid IN (SELECT unnest(ARRAY[typinput, typoutput, typreceive, typsend, typmodin, typmodout]) FROM pg_type)
		THEN 'type-io'
	WHEN prorettype IN ('trigger'::regtype, 'event_trigger'::regtype, 'language_handler'::regtype,
		'fdw_handler'::regtype, 'index_am_handler'::regtype, 'table_am_handler'::regtype,
		'tsm_handler'::regtype)
		OR oid IN (SELECT lanvalidator FROM pg_language UNION SELECT fdwvalidator FROM pg_foreign_data_wrapper)
		THEN 'server-calls-only'
	WHEN proname ~ '^(binary_upgrade_.*|pg_extension_config_dump|pg_event_trigger_.*|pg_import_system_collations|pg_nextoid|pg_stop_making_pinned_objects|pg_rotate_logfile_old|brin_summarize_new_values|brin_summarize_range|brin_desummarize_range|gin_clean_pending_list)$'
		THEN 'refuses-the-app-role'
	WHEN prokind IN ('a', 'w') THEN 'aggregate-window'
	WHEN oid IN (SELECT oprcode FROM pg_operator UNION SELECT amproc FROM pg_amproc
		UNION SELECT castfunc FROM pg_cast
		UNION SELECT unnest(ARRAY[aggtransfn, aggfinalfn, aggcombinefn, aggmtransfn, aggminvtransfn, aggmfinalfn])
			FROM pg_aggregate)
		THEN 'operator-cast-support'
	WHEN pronamespace = 'information_schema'::regnamespace THEN 'information-schema'
	WHEN proname ~ '^(has_.*_privilege|pg_has_role|row_security_active|pg_.*_is_visible|pg_get_.*def.*|pg_get_expr|pg_get_function_.*|format_type|obj_description|col_description|shobj_description|pg_describe_object|pg_identify_object.*|pg_get_object_address|to_reg.*|pg_get_serial_sequence|pg_get_userbyid|pg_get_replica_identity_index|pg_get_publication_tables|pg_relation_is_publishable|pg_relation_is_updatable|pg_column_is_updatable|pg_index.*has_property|pg_partition_.*|pg_filenode_relation|pg_relation_filenode|pg_relation_filepath|pg_is_other_temp_schema|pg_sequence_parameters|amvalidate|pg_get_catalog_foreign_keys|pg_get_keywords|acldefault|aclexplode|makeaclitem|pg_options_to_table|oidvectortypes|enum_.*)$'
		THEN 'catalog'
	WHEN proname ~ '^(current_user|session_user|getpgusername|current_schemas?|current_database|current_query|current_setting|pg_show_all_settings|pg_settings_get_flags|pg_backend_pid|pg_my_temp_schema|inet_(client|server)_(addr|port)|pg_trigger_depth|pg_client_encoding|getdatabaseencoding|get_current_ts_config|pg_jit_available|pg_sleep.*|pg_stat_get_xact_.*|pg_stat_clear_snapshot|pg_stat_force_next_flush|pg_stat_get_snapshot_timestamp|txid_current_if_assigned|pg_current_xact_id_if_assigned|setseed|currval|lastval)$'
		THEN 'own-session'
	WHEN proname ~ '^(txid_current|pg_current_xact_id|pg_(current|last)_wal_.*lsn|pg_last_xact_replay_timestamp|pg_(relation|table|indexes|total_relation|database|tablespace)_size)$'
		OR (proname IN ('age', 'mxid_age') AND proargtypes = '28')
		THEN 'volume'
	WHEN proname ~ '^(version|pg_postmaster_start_time|pg_conf_load_time|pg_is_in_recovery|pg_is_wal_replay_paused|pg_get_wal_replay_pause_state|pg_control_(init|recovery|system)|pg_available_extension.*|pg_extension_update_paths|pg_(database_)?collation_actual_version|pg_timezone_.*|pg_get_wal_resource_managers|pg_tablespace_(location|databases))$'
		THEN 'server-installation'
	WHEN proname ~ '^pg_(try_)?advisory_' THEN 'advisory-locks'
	WHEN proname IN ('nextval', 'setval', 'pg_sequence_last_value') THEN 'sequences'
	WHEN provolatile = 'i' THEN 'pure'
	ELSE 'review-by-hand'
END || '|' || signature
FROM fn
ORDER BY 1;
