-- Indexes of the tables of tables.sql and of materialized views (views.sql). Left out: indexes that
-- implement a primary key, unique or exclusion constraint of their table (they come with the
-- constraint), and partition indexes attached to an index of the parent (pg_inherits).
SELECT n.nspname::text AS schema,
       c.relname::text AS table_name,
       i.relname::text AS name,
       pg_catalog.pg_get_indexdef(x.indexrelid) AS definition,
       x.indisvalid AS valid,
       ds.description AS comment
FROM scope_rel
JOIN pg_catalog.pg_class c ON c.oid = scope_rel.oid
JOIN pg_catalog.pg_index x ON x.indrelid = c.oid
JOIN pg_catalog.pg_class i ON i.oid = x.indexrelid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_description ds
       ON ds.objoid = i.oid AND ds.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ds.objsubid = 0
WHERE c.relkind IN ('r', 'p', 'm')
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_constraint k
                  WHERE k.conrelid = x.indrelid AND k.conindid = x.indexrelid
                    AND k.contype IN ('p', 'u', 'x'))
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_inherits h WHERE h.inhrelid = x.indexrelid)
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2, 3;
