-- Enum types in user schemas, not owned by an extension, with labels in sort order.
SELECT n.nspname::text AS schema,
       t.typname::text AS name,
       COALESCE(l.labels, '{}') AS labels,
       ds.description AS comment
FROM pg_catalog.pg_type t
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
LEFT JOIN LATERAL (
    SELECT pg_catalog.array_agg(e.enumlabel::text ORDER BY e.enumsortorder) AS labels
    FROM pg_catalog.pg_enum e
    WHERE e.enumtypid = t.oid
) l ON true
LEFT JOIN pg_catalog.pg_description ds
       ON ds.objoid = t.oid AND ds.classoid = 'pg_catalog.pg_type'::pg_catalog.regclass AND ds.objsubid = 0
WHERE t.typtype = 'e'
  AND t.oid IN (SELECT oid FROM scope_type)
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
                    AND d.objid = t.oid AND d.deptype = 'e')
ORDER BY 1, 2;
