-- Installed extensions except plpgsql (always there).
SELECT e.extname::text AS name,
       n.nspname::text AS schema,
       e.extversion AS version,
       ds.description AS comment
FROM pg_catalog.pg_extension e
JOIN pg_catalog.pg_namespace n ON n.oid = e.extnamespace
LEFT JOIN pg_catalog.pg_description ds
       ON ds.objoid = e.oid AND ds.classoid = 'pg_catalog.pg_extension'::pg_catalog.regclass AND ds.objsubid = 0
WHERE e.extname <> 'plpgsql'
ORDER BY 1;
