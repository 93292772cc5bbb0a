-- Constraints of the tables of tables.sql that the table defines itself: primary key, unique,
-- check, exclusion and foreign key. Left out: NOT NULL rows ('n', PostgreSQL 18+; NOT NULL is a
-- column property), constraint triggers ('t', listed as triggers), and constraints derived from
-- another one (conislocal false: inherited by a partition; conparentid set: clones on partitions
-- and the per-partition foreign keys PostgreSQL adds when the referenced table is partitioned).
SELECT n.nspname::text AS schema,
       c.relname::text AS table_name,
       k.conname::text AS name,
       k.contype::text AS kind,
       pg_catalog.pg_get_constraintdef(k.oid) AS definition,
       k.convalidated AS valid,
       fn.nspname::text AS ref_schema,
       fc.relname::text AS ref_name,
       ds.description AS comment
FROM scope_rel
JOIN pg_catalog.pg_class c ON c.oid = scope_rel.oid
JOIN pg_catalog.pg_constraint k ON k.conrelid = c.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_class fc ON k.contype = 'f' AND fc.oid = k.confrelid
LEFT JOIN pg_catalog.pg_namespace fn ON fn.oid = fc.relnamespace
LEFT JOIN pg_catalog.pg_description ds
       ON ds.objoid = k.oid AND ds.classoid = 'pg_catalog.pg_constraint'::pg_catalog.regclass AND ds.objsubid = 0
WHERE k.contype IN ('p', 'u', 'c', 'x', 'f')
  AND k.conislocal AND k.conparentid = 0
  AND c.relkind IN ('r', 'p')
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2, 3;
