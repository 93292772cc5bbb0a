-- User schemas: not system ones (pg_*, information_schema), not created by an extension.
SELECT n.nspname::text AS name,
       ds.description AS comment
FROM pg_catalog.pg_namespace n
LEFT JOIN pg_catalog.pg_description ds
       ON ds.objoid = n.oid AND ds.classoid = 'pg_catalog.pg_namespace'::pg_catalog.regclass AND ds.objsubid = 0
WHERE n.oid IN (SELECT oid FROM scope_ns)
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                    AND d.objid = n.oid AND d.deptype = 'e')
ORDER BY 1;
