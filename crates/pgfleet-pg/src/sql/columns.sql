-- Columns of the tables of tables.sql: not system or dropped columns, and for a partition only
-- the columns it defines itself (its inherited ones, attislocal = false, belong to the parent).
-- A generated column's expression is in "generated" (attgenerated 's' stored, 'v' virtual on
-- PostgreSQL 18+), a plain default in "default".
SELECT n.nspname::text AS schema,
       c.relname::text AS table_name,
       a.attname::text AS name,
       a.attnum::int4 AS position,
       pg_catalog.format_type(a.atttypid, a.atttypmod) AS data_type,
       a.attnotnull AS not_null,
       CASE WHEN a.attgenerated = '' THEN pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) END AS "default",
       CASE WHEN a.attgenerated <> '' THEN pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) END AS generated,
       a.attgenerated::text = 'v' AS generated_virtual,
       a.attidentity::text AS identity,
       ids.seqincrement AS identity_increment,
       CASE WHEN ids.seqstart <> CASE WHEN ids.seqincrement > 0 THEN ids.seqmin ELSE ids.seqmax END
            THEN ids.seqstart END AS identity_start,
       CASE WHEN ids.seqmin <> CASE WHEN ids.seqincrement > 0 THEN 1 ELSE ids.typmin END
            THEN ids.seqmin END AS identity_min,
       CASE WHEN ids.seqmax <> CASE WHEN ids.seqincrement > 0 THEN ids.typmax ELSE -1 END
            THEN ids.seqmax END AS identity_max,
       ids.seqcache AS identity_cache,
       ids.seqcycle AS identity_cycle,
       CASE WHEN a.attcollation <> 0 AND a.attcollation <> t.typcollation
            THEN pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname)
       END AS collation,
       ds.description AS comment
FROM scope_rel
JOIN pg_catalog.pg_class c ON c.oid = scope_rel.oid
JOIN pg_catalog.pg_attribute a ON a.attrelid = c.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
JOIN pg_catalog.pg_type t ON t.oid = a.atttypid
-- An identity column's sequence; its options are reported only when they are not the defaults for
-- the sequence's type and direction (so a column type change alone is no difference).
LEFT JOIN LATERAL (
    SELECT s.seqincrement, s.seqstart, s.seqmin, s.seqmax, s.seqcache, s.seqcycle,
           CASE s.seqtypid WHEN 'pg_catalog.int2'::pg_catalog.regtype THEN -32768
                           WHEN 'pg_catalog.int4'::pg_catalog.regtype THEN -2147483648
                           ELSE -9223372036854775808 END AS typmin,
           CASE s.seqtypid WHEN 'pg_catalog.int2'::pg_catalog.regtype THEN 32767
                           WHEN 'pg_catalog.int4'::pg_catalog.regtype THEN 2147483647
                           ELSE 9223372036854775807 END AS typmax
    FROM pg_catalog.pg_depend d
    JOIN pg_catalog.pg_sequence s ON s.seqrelid = d.objid
    WHERE a.attidentity <> ''
      AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
      AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
      AND d.refobjid = a.attrelid AND d.refobjsubid = a.attnum AND d.deptype = 'i'
    LIMIT 1
) ids ON true
LEFT JOIN pg_catalog.pg_attrdef ad ON ad.adrelid = a.attrelid AND ad.adnum = a.attnum
LEFT JOIN pg_catalog.pg_collation co ON co.oid = a.attcollation
LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
LEFT JOIN pg_catalog.pg_description ds
       ON ds.objoid = c.oid AND ds.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass
      AND ds.objsubid = a.attnum
WHERE c.relkind IN ('r', 'p')
  AND a.attnum > 0 AND NOT a.attisdropped
  AND (a.attislocal OR NOT c.relispartition)
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2, a.attnum;
