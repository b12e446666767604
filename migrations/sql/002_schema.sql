-- The schema belongs to the owner; the app role may only look things up in it.
CREATE EXTENSION IF NOT EXISTS vector;

CREATE SCHEMA IF NOT EXISTS {{.schema}} AUTHORIZATION {{.owner}};
REVOKE ALL ON SCHEMA {{.schema}} FROM PUBLIC;
GRANT USAGE ON SCHEMA {{.schema}} TO {{.app}};

-- Objects the owner creates later get the same grants without another migration.
ALTER DEFAULT PRIVILEGES FOR ROLE {{.owner}} IN SCHEMA {{.schema}} REVOKE ALL ON TABLES FROM PUBLIC;
ALTER DEFAULT PRIVILEGES FOR ROLE {{.owner}} IN SCHEMA {{.schema}} REVOKE EXECUTE ON FUNCTIONS FROM PUBLIC;

-- Small tenants get a full top-k from the HNSW indexes: with row-level security the index scan is
-- filtered after the fact, so a tenant holding 1% of the rows would see about 1% of ef_search
-- candidates. Iterative scans (pgvector 0.8) keep scanning until enough rows pass the filter.
ALTER ROLE {{.app}} SET hnsw.iterative_scan = 'strict_order';
ALTER ROLE {{.app}} SET hnsw.ef_search = 100;
