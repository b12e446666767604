-- The metadata queries SQLAlchemy 1.4 with psycopg2 (inspect: schemas, tables, views, columns, keys, indexes, constraints, comments, sequences; autoload) sends, as the server logged them (log_statement = all) with
-- their parameters written in. Each query follows a "-- query" line.

-- query
SELECT t.oid, typarray
    FROM pg_type t JOIN pg_namespace ns
        ON typnamespace = ns.oid
    WHERE typname = 'hstore';

-- query
select pg_catalog.version();

-- query
select current_schema();

-- query
show transaction isolation level;

-- query
show standard_conforming_strings;

-- query
SELECT nspname FROM pg_namespace WHERE nspname NOT LIKE 'pg_%' ORDER BY nspname;

-- query
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'llmspell' AND c.relkind in ('r', 'p');

-- query
SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace WHERE n.nspname = 'llmspell' AND c.relkind IN ('v', 'm');

-- query
SELECT c.oid
                FROM pg_catalog.pg_class c
                LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE (n.nspname = 'llmspell')
                AND c.relname = 'entities' AND c.relkind in
                ('r', 'v', 'm', 'f', 'p');

-- query
SELECT a.attname,
                  pg_catalog.format_type(a.atttypid, a.atttypmod),
                  (
                    SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                    FROM pg_catalog.pg_attrdef d
                    WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum
                    AND a.atthasdef
                  ) AS DEFAULT,
                  a.attnotnull,
                  a.attrelid as table_oid,
                  pgd.description as comment,
                  a.attgenerated as generated,
                                  (SELECT json_build_object(
                        'always', a.attidentity = 'a',
                        'start', s.seqstart,
                        'increment', s.seqincrement,
                        'minvalue', s.seqmin,
                        'maxvalue', s.seqmax,
                        'cache', s.seqcache,
                        'cycle', s.seqcycle)
                    FROM pg_catalog.pg_sequence s
                    JOIN pg_catalog.pg_class c on s.seqrelid = c."oid"
                    WHERE c.relkind = 'S'
                    AND a.attidentity != ''
                    AND s.seqrelid = pg_catalog.pg_get_serial_sequence(
                        a.attrelid::regclass::text, a.attname
                    )::regclass::oid
                    ) as identity_options                
                FROM pg_catalog.pg_attribute a
                LEFT JOIN pg_catalog.pg_description pgd ON (
                    pgd.objoid = a.attrelid AND pgd.objsubid = a.attnum)
                WHERE a.attrelid = 16795
                AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum;

-- query
SELECT t.typname as "name",
                   pg_catalog.format_type(t.typbasetype, t.typtypmod) as "attype",
                   not t.typnotnull as "nullable",
                   t.typdefault as "default",
                   pg_catalog.pg_type_is_visible(t.oid) as "visible",
                   n.nspname as "schema"
                FROM pg_catalog.pg_type t
                   LEFT JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                WHERE t.typtype = 'd';

-- query
SELECT t.typname as "name",
                   -- no enum defaults in 8.4 at least
                   -- t.typdefault as "default",
                   pg_catalog.pg_type_is_visible(t.oid) as "visible",
                   n.nspname as "schema",
                   e.enumlabel as "label"
                FROM pg_catalog.pg_type t
                     LEFT JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
                     LEFT JOIN pg_catalog.pg_enum e ON t.oid = e.enumtypid
                WHERE t.typtype = 'e'
            ORDER BY "schema", "name", e.oid;

-- query
SELECT a.attname
                    FROM pg_attribute a JOIN (
                        SELECT unnest(ix.indkey) attnum,
                               generate_subscripts(ix.indkey, 1) ord
                        FROM pg_index ix
                        WHERE ix.indrelid = 16795 AND ix.indisprimary
                        ) k ON a.attnum=k.attnum
                    WHERE a.attrelid = 16795
                    ORDER BY k.ord;

-- query
SELECT conname
               FROM  pg_catalog.pg_constraint r
               WHERE r.conrelid = 16795 AND r.contype = 'p'
               ORDER BY 1;

-- query
SELECT r.conname,
                    pg_catalog.pg_get_constraintdef(r.oid, true) as condef,
                    n.nspname as conschema
              FROM  pg_catalog.pg_constraint r,
                    pg_namespace n,
                    pg_class c
    
              WHERE r.conrelid = 16795 AND
                    r.contype = 'f' AND
                    c.oid = confrelid AND
                    n.oid = c.relnamespace
              ORDER BY 1;

-- query
SELECT
                      i.relname as relname,
                      ix.indisunique, ix.indexprs,
                      a.attname, a.attnum, c.conrelid, ix.indkey::varchar,
                      ix.indoption::varchar, i.reloptions, am.amname,
                      pg_get_expr(ix.indpred, ix.indrelid),
                      ix.indnkeyatts as indnkeyatts
                  FROM
                      pg_class t
                            join pg_index ix on t.oid = ix.indrelid
                            join pg_class i on i.oid = ix.indexrelid
                            left outer join
                                pg_attribute a
                                on t.oid = a.attrelid and a.attnum = ANY(ix.indkey)
                            left outer join
                                pg_constraint c
                                on (ix.indrelid = c.conrelid and
                                    ix.indexrelid = c.conindid and
                                    c.contype in ('p', 'u', 'x'))
                            left outer join
                                pg_am am
                                on i.relam = am.oid
                  WHERE
                      t.relkind IN ('r', 'v', 'f', 'm', 'p')
                      and t.oid = 16795
                      and ix.indisprimary = 'f'
                  ORDER BY
                      t.relname,
                      i.relname;

-- query
SELECT
                    cons.conname as name,
                    cons.conkey as key,
                    a.attnum as col_num,
                    a.attname as col_name
                FROM
                    pg_catalog.pg_constraint cons
                    join pg_attribute a
                      on cons.conrelid = a.attrelid AND
                        a.attnum = ANY(cons.conkey)
                WHERE
                    cons.conrelid = 16795 AND
                    cons.contype = 'u';

-- query
SELECT
                    cons.conname as name,
                    pg_get_constraintdef(cons.oid) as src
                FROM
                    pg_catalog.pg_constraint cons
                WHERE
                    cons.conrelid = 16795 AND
                    cons.contype = 'c';

-- query
SELECT
                    pgd.description as table_comment
                FROM
                    pg_catalog.pg_description pgd
                WHERE
                    pgd.objsubid = 0 AND
                    pgd.objoid = 16795;

-- query
SELECT c.oid
                FROM pg_catalog.pg_class c
                LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE (n.nspname = 'llmspell')
                AND c.relname = 'relationships' AND c.relkind in
                ('r', 'v', 'm', 'f', 'p');

-- query
SELECT a.attname,
                  pg_catalog.format_type(a.atttypid, a.atttypmod),
                  (
                    SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                    FROM pg_catalog.pg_attrdef d
                    WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum
                    AND a.atthasdef
                  ) AS DEFAULT,
                  a.attnotnull,
                  a.attrelid as table_oid,
                  pgd.description as comment,
                  a.attgenerated as generated,
                                  (SELECT json_build_object(
                        'always', a.attidentity = 'a',
                        'start', s.seqstart,
                        'increment', s.seqincrement,
                        'minvalue', s.seqmin,
                        'maxvalue', s.seqmax,
                        'cache', s.seqcache,
                        'cycle', s.seqcycle)
                    FROM pg_catalog.pg_sequence s
                    JOIN pg_catalog.pg_class c on s.seqrelid = c."oid"
                    WHERE c.relkind = 'S'
                    AND a.attidentity != ''
                    AND s.seqrelid = pg_catalog.pg_get_serial_sequence(
                        a.attrelid::regclass::text, a.attname
                    )::regclass::oid
                    ) as identity_options                
                FROM pg_catalog.pg_attribute a
                LEFT JOIN pg_catalog.pg_description pgd ON (
                    pgd.objoid = a.attrelid AND pgd.objsubid = a.attnum)
                WHERE a.attrelid = 16816
                AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum;

-- query
SELECT a.attname
                    FROM pg_attribute a JOIN (
                        SELECT unnest(ix.indkey) attnum,
                               generate_subscripts(ix.indkey, 1) ord
                        FROM pg_index ix
                        WHERE ix.indrelid = 16816 AND ix.indisprimary
                        ) k ON a.attnum=k.attnum
                    WHERE a.attrelid = 16816
                    ORDER BY k.ord;

-- query
SELECT conname
               FROM  pg_catalog.pg_constraint r
               WHERE r.conrelid = 16816 AND r.contype = 'p'
               ORDER BY 1;

-- query
SELECT r.conname,
                    pg_catalog.pg_get_constraintdef(r.oid, true) as condef,
                    n.nspname as conschema
              FROM  pg_catalog.pg_constraint r,
                    pg_namespace n,
                    pg_class c
    
              WHERE r.conrelid = 16816 AND
                    r.contype = 'f' AND
                    c.oid = confrelid AND
                    n.oid = c.relnamespace
              ORDER BY 1;

-- query
SELECT
                      i.relname as relname,
                      ix.indisunique, ix.indexprs,
                      a.attname, a.attnum, c.conrelid, ix.indkey::varchar,
                      ix.indoption::varchar, i.reloptions, am.amname,
                      pg_get_expr(ix.indpred, ix.indrelid),
                      ix.indnkeyatts as indnkeyatts
                  FROM
                      pg_class t
                            join pg_index ix on t.oid = ix.indrelid
                            join pg_class i on i.oid = ix.indexrelid
                            left outer join
                                pg_attribute a
                                on t.oid = a.attrelid and a.attnum = ANY(ix.indkey)
                            left outer join
                                pg_constraint c
                                on (ix.indrelid = c.conrelid and
                                    ix.indexrelid = c.conindid and
                                    c.contype in ('p', 'u', 'x'))
                            left outer join
                                pg_am am
                                on i.relam = am.oid
                  WHERE
                      t.relkind IN ('r', 'v', 'f', 'm', 'p')
                      and t.oid = 16816
                      and ix.indisprimary = 'f'
                  ORDER BY
                      t.relname,
                      i.relname;

-- query
SELECT
                    cons.conname as name,
                    cons.conkey as key,
                    a.attnum as col_num,
                    a.attname as col_name
                FROM
                    pg_catalog.pg_constraint cons
                    join pg_attribute a
                      on cons.conrelid = a.attrelid AND
                        a.attnum = ANY(cons.conkey)
                WHERE
                    cons.conrelid = 16816 AND
                    cons.contype = 'u';

-- query
SELECT
                    cons.conname as name,
                    pg_get_constraintdef(cons.oid) as src
                FROM
                    pg_catalog.pg_constraint cons
                WHERE
                    cons.conrelid = 16816 AND
                    cons.contype = 'c';

-- query
SELECT
                    pgd.description as table_comment
                FROM
                    pg_catalog.pg_description pgd
                WHERE
                    pgd.objsubid = 0 AND
                    pgd.objoid = 16816;

-- query
SELECT c.oid
                FROM pg_catalog.pg_class c
                LEFT JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
                WHERE (n.nspname = 'llmspell')
                AND c.relname = 'vector_embeddings_384' AND c.relkind in
                ('r', 'v', 'm', 'f', 'p');

-- query
SELECT a.attname,
                  pg_catalog.format_type(a.atttypid, a.atttypmod),
                  (
                    SELECT pg_catalog.pg_get_expr(d.adbin, d.adrelid)
                    FROM pg_catalog.pg_attrdef d
                    WHERE d.adrelid = a.attrelid AND d.adnum = a.attnum
                    AND a.atthasdef
                  ) AS DEFAULT,
                  a.attnotnull,
                  a.attrelid as table_oid,
                  pgd.description as comment,
                  a.attgenerated as generated,
                                  (SELECT json_build_object(
                        'always', a.attidentity = 'a',
                        'start', s.seqstart,
                        'increment', s.seqincrement,
                        'minvalue', s.seqmin,
                        'maxvalue', s.seqmax,
                        'cache', s.seqcache,
                        'cycle', s.seqcycle)
                    FROM pg_catalog.pg_sequence s
                    JOIN pg_catalog.pg_class c on s.seqrelid = c."oid"
                    WHERE c.relkind = 'S'
                    AND a.attidentity != ''
                    AND s.seqrelid = pg_catalog.pg_get_serial_sequence(
                        a.attrelid::regclass::text, a.attname
                    )::regclass::oid
                    ) as identity_options                
                FROM pg_catalog.pg_attribute a
                LEFT JOIN pg_catalog.pg_description pgd ON (
                    pgd.objoid = a.attrelid AND pgd.objsubid = a.attnum)
                WHERE a.attrelid = 16719
                AND a.attnum > 0 AND NOT a.attisdropped
                ORDER BY a.attnum;

-- query
SELECT a.attname
                    FROM pg_attribute a JOIN (
                        SELECT unnest(ix.indkey) attnum,
                               generate_subscripts(ix.indkey, 1) ord
                        FROM pg_index ix
                        WHERE ix.indrelid = 16719 AND ix.indisprimary
                        ) k ON a.attnum=k.attnum
                    WHERE a.attrelid = 16719
                    ORDER BY k.ord;

-- query
SELECT conname
               FROM  pg_catalog.pg_constraint r
               WHERE r.conrelid = 16719 AND r.contype = 'p'
               ORDER BY 1;

-- query
SELECT r.conname,
                    pg_catalog.pg_get_constraintdef(r.oid, true) as condef,
                    n.nspname as conschema
              FROM  pg_catalog.pg_constraint r,
                    pg_namespace n,
                    pg_class c
    
              WHERE r.conrelid = 16719 AND
                    r.contype = 'f' AND
                    c.oid = confrelid AND
                    n.oid = c.relnamespace
              ORDER BY 1;

-- query
SELECT
                      i.relname as relname,
                      ix.indisunique, ix.indexprs,
                      a.attname, a.attnum, c.conrelid, ix.indkey::varchar,
                      ix.indoption::varchar, i.reloptions, am.amname,
                      pg_get_expr(ix.indpred, ix.indrelid),
                      ix.indnkeyatts as indnkeyatts
                  FROM
                      pg_class t
                            join pg_index ix on t.oid = ix.indrelid
                            join pg_class i on i.oid = ix.indexrelid
                            left outer join
                                pg_attribute a
                                on t.oid = a.attrelid and a.attnum = ANY(ix.indkey)
                            left outer join
                                pg_constraint c
                                on (ix.indrelid = c.conrelid and
                                    ix.indexrelid = c.conindid and
                                    c.contype in ('p', 'u', 'x'))
                            left outer join
                                pg_am am
                                on i.relam = am.oid
                  WHERE
                      t.relkind IN ('r', 'v', 'f', 'm', 'p')
                      and t.oid = 16719
                      and ix.indisprimary = 'f'
                  ORDER BY
                      t.relname,
                      i.relname;

-- query
SELECT
                    cons.conname as name,
                    cons.conkey as key,
                    a.attnum as col_num,
                    a.attname as col_name
                FROM
                    pg_catalog.pg_constraint cons
                    join pg_attribute a
                      on cons.conrelid = a.attrelid AND
                        a.attnum = ANY(cons.conkey)
                WHERE
                    cons.conrelid = 16719 AND
                    cons.contype = 'u';

-- query
SELECT
                    cons.conname as name,
                    pg_get_constraintdef(cons.oid) as src
                FROM
                    pg_catalog.pg_constraint cons
                WHERE
                    cons.conrelid = 16719 AND
                    cons.contype = 'c';

-- query
SELECT
                    pgd.description as table_comment
                FROM
                    pg_catalog.pg_description pgd
                WHERE
                    pgd.objsubid = 0 AND
                    pgd.objoid = 16719;

-- query
SELECT relname FROM pg_class c join pg_namespace n on n.oid=c.relnamespace where relkind='S' and n.nspname='llmspell';

-- query
select relname from pg_class c join pg_namespace n on n.oid=c.relnamespace where n.nspname='llmspell' and relname='entities';

-- query
SELECT llmspell.entities.name 
    FROM llmspell.entities;
