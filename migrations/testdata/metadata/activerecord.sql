-- The metadata queries ActiveRecord 6.1 (connection setup, tables, views, columns, keys, indexes, constraints, comments, extensions, advisory locks) sends, as the server logged them (log_statement = all) with
-- their parameters written in. Each query follows a "-- query" line.

-- query
SET client_min_messages TO 'warning';

-- query
SET standard_conforming_strings = on;

-- query
SET intervalstyle = iso_8601;

-- query
SET SESSION timezone TO 'UTC';

-- query
SELECT t.oid, t.typname
    FROM pg_type as t
    WHERE t.typname IN ('int2', 'int4', 'int8', 'oid', 'float4', 'float8', 'numeric', 'bool', 'timestamp', 'timestamptz');

-- query
SELECT t.oid, t.typname, t.typelem, t.typdelim, t.typinput, r.rngsubtype, t.typtype, t.typbasetype
    FROM pg_type as t
    LEFT JOIN pg_range as r ON oid = rngtypid
    WHERE
      t.typname IN ('int2', 'int4', 'int8', 'oid', 'float4', 'float8', 'text', 'varchar', 'char', 'name', 'bpchar', 'bool', 'bit', 'varbit', 'timestamptz', 'date', 'money', 'bytea', 'point', 'hstore', 'json', 'jsonb', 'cidr', 'inet', 'uuid', 'xml', 'tsvector', 'macaddr', 'citext', 'ltree', 'line', 'lseg', 'box', 'path', 'polygon', 'circle', 'time', 'timestamp', 'numeric', 'interval')
      OR t.typtype IN ('r', 'e', 'd')
      OR t.typinput = 'array_in(cstring,oid,integer)'::regprocedure
      OR t.typelem != 0;

-- query
SHOW TIME ZONE;

-- query
SELECT 1;

-- query
SET search_path TO llmspell;

-- query
SELECT c.relname FROM pg_class c LEFT JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY (current_schemas(false)) AND c.relkind IN ('r','p');

-- query
SELECT c.relname FROM pg_class c LEFT JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY (current_schemas(false)) AND c.relkind IN ('v','m');

-- query
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
           pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.atttypid, a.atttypmod,
           c.collname, col_description(a.attrelid, a.attnum) AS comment
      FROM pg_attribute a
      LEFT JOIN pg_attrdef d ON a.attrelid = d.adrelid AND a.attnum = d.adnum
      LEFT JOIN pg_type t ON a.atttypid = t.oid
      LEFT JOIN pg_collation c ON a.attcollation = c.oid AND a.attcollation <> t.typcollation
     WHERE a.attrelid = '"entities"'::regclass
       AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum;

-- query
SELECT a.attname
      FROM (
             SELECT indrelid, indkey, generate_subscripts(indkey, 1) idx
               FROM pg_index
              WHERE indrelid = '"entities"'::regclass
                AND indisprimary
           ) i
      JOIN pg_attribute a
        ON a.attrelid = i.indrelid
       AND a.attnum = i.indkey[i.idx]
     ORDER BY i.idx;

-- query
SELECT distinct i.relname, d.indisunique, d.indkey, pg_get_indexdef(d.indexrelid), t.oid,
                    pg_catalog.obj_description(i.oid, 'pg_class') AS comment
    FROM pg_class t
    INNER JOIN pg_index d ON t.oid = d.indrelid
    INNER JOIN pg_class i ON d.indexrelid = i.oid
    LEFT JOIN pg_namespace n ON n.oid = i.relnamespace
    WHERE i.relkind IN ('i', 'I')
      AND d.indisprimary = 'f'
      AND t.relname = 'entities'
      AND n.nspname = ANY (current_schemas(false))
    ORDER BY i.relname;

-- query
SELECT a.attnum, a.attname
    FROM pg_attribute a
    WHERE a.attrelid = 16795
    AND a.attnum IN (1,3);

-- query
SELECT t2.oid::regclass::text AS to_table, a1.attname AS column, a2.attname AS primary_key, c.conname AS name, c.confupdtype AS on_update, c.confdeltype AS on_delete, c.convalidated AS valid
    FROM pg_constraint c
    JOIN pg_class t1 ON c.conrelid = t1.oid
    JOIN pg_class t2 ON c.confrelid = t2.oid
    JOIN pg_attribute a1 ON a1.attnum = c.conkey[1] AND a1.attrelid = t1.oid
    JOIN pg_attribute a2 ON a2.attnum = c.confkey[1] AND a2.attrelid = t2.oid
    JOIN pg_namespace t3 ON c.connamespace = t3.oid
    WHERE c.contype = 'f'
      AND t1.relname = 'entities'
      AND t3.nspname = ANY (current_schemas(false))
    ORDER BY c.conname;

-- query
SELECT conname, pg_get_constraintdef(c.oid) AS constraintdef, c.convalidated AS valid
                FROM pg_constraint c
                JOIN pg_class t ON c.conrelid = t.oid
                WHERE c.contype = 'c'
                  AND t.relname = 'entities';

-- query
SELECT pg_catalog.obj_description(c.oid, 'pg_class')
    FROM pg_catalog.pg_class c
      LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = 'entities'
      AND c.relkind IN ('r','p')
      AND n.nspname = ANY (current_schemas(false));

-- query
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
           pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.atttypid, a.atttypmod,
           c.collname, col_description(a.attrelid, a.attnum) AS comment
      FROM pg_attribute a
      LEFT JOIN pg_attrdef d ON a.attrelid = d.adrelid AND a.attnum = d.adnum
      LEFT JOIN pg_type t ON a.atttypid = t.oid
      LEFT JOIN pg_collation c ON a.attcollation = c.oid AND a.attcollation <> t.typcollation
     WHERE a.attrelid = '"relationships"'::regclass
       AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum;

-- query
SELECT a.attname
      FROM (
             SELECT indrelid, indkey, generate_subscripts(indkey, 1) idx
               FROM pg_index
              WHERE indrelid = '"relationships"'::regclass
                AND indisprimary
           ) i
      JOIN pg_attribute a
        ON a.attrelid = i.indrelid
       AND a.attnum = i.indkey[i.idx]
     ORDER BY i.idx;

-- query
SELECT distinct i.relname, d.indisunique, d.indkey, pg_get_indexdef(d.indexrelid), t.oid,
                    pg_catalog.obj_description(i.oid, 'pg_class') AS comment
    FROM pg_class t
    INNER JOIN pg_index d ON t.oid = d.indrelid
    INNER JOIN pg_class i ON d.indexrelid = i.oid
    LEFT JOIN pg_namespace n ON n.oid = i.relnamespace
    WHERE i.relkind IN ('i', 'I')
      AND d.indisprimary = 'f'
      AND t.relname = 'relationships'
      AND n.nspname = ANY (current_schemas(false))
    ORDER BY i.relname;

-- query
SELECT a.attnum, a.attname
    FROM pg_attribute a
    WHERE a.attrelid = 16816
    AND a.attnum IN (1,3,5);

-- query
SELECT a.attnum, a.attname
    FROM pg_attribute a
    WHERE a.attrelid = 16816
    AND a.attnum IN (1,4,5);

-- query
SELECT t2.oid::regclass::text AS to_table, a1.attname AS column, a2.attname AS primary_key, c.conname AS name, c.confupdtype AS on_update, c.confdeltype AS on_delete, c.convalidated AS valid
    FROM pg_constraint c
    JOIN pg_class t1 ON c.conrelid = t1.oid
    JOIN pg_class t2 ON c.confrelid = t2.oid
    JOIN pg_attribute a1 ON a1.attnum = c.conkey[1] AND a1.attrelid = t1.oid
    JOIN pg_attribute a2 ON a2.attnum = c.confkey[1] AND a2.attrelid = t2.oid
    JOIN pg_namespace t3 ON c.connamespace = t3.oid
    WHERE c.contype = 'f'
      AND t1.relname = 'relationships'
      AND t3.nspname = ANY (current_schemas(false))
    ORDER BY c.conname;

-- query
SELECT conname, pg_get_constraintdef(c.oid) AS constraintdef, c.convalidated AS valid
                FROM pg_constraint c
                JOIN pg_class t ON c.conrelid = t.oid
                WHERE c.contype = 'c'
                  AND t.relname = 'relationships';

-- query
SELECT pg_catalog.obj_description(c.oid, 'pg_class')
    FROM pg_catalog.pg_class c
      LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = 'relationships'
      AND c.relkind IN ('r','p')
      AND n.nspname = ANY (current_schemas(false));

-- query
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
           pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.atttypid, a.atttypmod,
           c.collname, col_description(a.attrelid, a.attnum) AS comment
      FROM pg_attribute a
      LEFT JOIN pg_attrdef d ON a.attrelid = d.adrelid AND a.attnum = d.adnum
      LEFT JOIN pg_type t ON a.atttypid = t.oid
      LEFT JOIN pg_collation c ON a.attcollation = c.oid AND a.attcollation <> t.typcollation
     WHERE a.attrelid = '"vector_embeddings_384"'::regclass
       AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum;

-- query
SELECT t.oid, t.typname, t.typelem, t.typdelim, t.typinput, r.rngsubtype, t.typtype, t.typbasetype
    FROM pg_type as t
    LEFT JOIN pg_range as r ON oid = rngtypid
    WHERE t.oid IN (16391);

-- query
SELECT a.attname
      FROM (
             SELECT indrelid, indkey, generate_subscripts(indkey, 1) idx
               FROM pg_index
              WHERE indrelid = '"vector_embeddings_384"'::regclass
                AND indisprimary
           ) i
      JOIN pg_attribute a
        ON a.attrelid = i.indrelid
       AND a.attnum = i.indkey[i.idx]
     ORDER BY i.idx;

-- query
SELECT distinct i.relname, d.indisunique, d.indkey, pg_get_indexdef(d.indexrelid), t.oid,
                    pg_catalog.obj_description(i.oid, 'pg_class') AS comment
    FROM pg_class t
    INNER JOIN pg_index d ON t.oid = d.indrelid
    INNER JOIN pg_class i ON d.indexrelid = i.oid
    LEFT JOIN pg_namespace n ON n.oid = i.relnamespace
    WHERE i.relkind IN ('i', 'I')
      AND d.indisprimary = 'f'
      AND t.relname = 'vector_embeddings_384'
      AND n.nspname = ANY (current_schemas(false))
    ORDER BY i.relname;

-- query
SELECT a.attnum, a.attname
    FROM pg_attribute a
    WHERE a.attrelid = 16719
    AND a.attnum IN (4);

-- query
SELECT a.attnum, a.attname
    FROM pg_attribute a
    WHERE a.attrelid = 16719
    AND a.attnum IN (1,3);

-- query
SELECT t2.oid::regclass::text AS to_table, a1.attname AS column, a2.attname AS primary_key, c.conname AS name, c.confupdtype AS on_update, c.confdeltype AS on_delete, c.convalidated AS valid
    FROM pg_constraint c
    JOIN pg_class t1 ON c.conrelid = t1.oid
    JOIN pg_class t2 ON c.confrelid = t2.oid
    JOIN pg_attribute a1 ON a1.attnum = c.conkey[1] AND a1.attrelid = t1.oid
    JOIN pg_attribute a2 ON a2.attnum = c.confkey[1] AND a2.attrelid = t2.oid
    JOIN pg_namespace t3 ON c.connamespace = t3.oid
    WHERE c.contype = 'f'
      AND t1.relname = 'vector_embeddings_384'
      AND t3.nspname = ANY (current_schemas(false))
    ORDER BY c.conname;

-- query
SELECT conname, pg_get_constraintdef(c.oid) AS constraintdef, c.convalidated AS valid
                FROM pg_constraint c
                JOIN pg_class t ON c.conrelid = t.oid
                WHERE c.contype = 'c'
                  AND t.relname = 'vector_embeddings_384';

-- query
SELECT pg_catalog.obj_description(c.oid, 'pg_class')
    FROM pg_catalog.pg_class c
      LEFT JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE c.relname = 'vector_embeddings_384'
      AND c.relkind IN ('r','p')
      AND n.nspname = ANY (current_schemas(false));

-- query
SELECT extname FROM pg_extension;

-- query
SELECT c.relname FROM pg_class c LEFT JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = ANY (current_schemas(false)) AND c.relname = 'entities' AND c.relkind IN ('r','v','m','p','f');

-- query
SELECT current_database();

-- query
SELECT a.attname, format_type(a.atttypid, a.atttypmod),
           pg_get_expr(d.adbin, d.adrelid), a.attnotnull, a.atttypid, a.atttypmod,
           c.collname, col_description(a.attrelid, a.attnum) AS comment
      FROM pg_attribute a
      LEFT JOIN pg_attrdef d ON a.attrelid = d.adrelid AND a.attnum = d.adnum
      LEFT JOIN pg_type t ON a.atttypid = t.oid
      LEFT JOIN pg_collation c ON a.attcollation = c.oid AND a.attcollation <> t.typcollation
     WHERE a.attrelid = '"llmspell"."entities"'::regclass
       AND a.attnum > 0 AND NOT a.attisdropped
     ORDER BY a.attnum;

-- query
SELECT COUNT(*) FROM "llmspell"."entities";

-- query
SELECT pg_try_advisory_lock(42);

-- query
SELECT pg_advisory_unlock(42);

-- query
SELECT pg_encoding_to_char(encoding) FROM pg_database WHERE datname = current_database();

-- query
SELECT datcollate FROM pg_database WHERE datname = current_database();

-- query
SELECT datctype FROM pg_database WHERE datname = current_database();

-- query
SHOW max_identifier_length;
