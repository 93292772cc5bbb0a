-- Triggers of the tables of tables.sql, except internal ones (foreign keys, deferred unique
-- checks) and the clones PostgreSQL puts on partitions of a table with a row trigger (tgparentid).
SELECT n.nspname::text AS schema,
       c.relname::text AS table_name,
       t.tgname::text AS name,
       pg_catalog.pg_get_triggerdef(t.oid) AS definition,
       t.tgenabled::text AS enabled,
       ds.description AS comment
FROM scope_rel
JOIN pg_catalog.pg_class c ON c.oid = scope_rel.oid
JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN pg_catalog.pg_description ds
       ON ds.objoid = t.oid AND ds.classoid = 'pg_catalog.pg_trigger'::pg_catalog.regclass AND ds.objsubid = 0
WHERE NOT t.tgisinternal AND t.tgparentid = 0
  AND c.relkind IN ('r', 'p')
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2, 3;
