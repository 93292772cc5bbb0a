-- Functions and procedures (not aggregates or window functions) in user schemas, except those that
-- belong to an extension ('e') or are part of another object ('i': e.g. a range type's constructors).
SELECT n.nspname::text AS schema,
       p.proname::text AS name,
       pg_catalog.pg_get_function_identity_arguments(p.oid) AS args,
       p.prokind = 'p' AS procedure,
       CASE WHEN p.prokind <> 'p' THEN pg_catalog.pg_get_function_result(p.oid) END AS returns,
       pg_catalog.pg_get_functiondef(p.oid) AS definition,
       ds.description AS comment
FROM pg_catalog.pg_proc p
JOIN pg_catalog.pg_namespace n ON n.oid = p.pronamespace
LEFT JOIN pg_catalog.pg_description ds
       ON ds.objoid = p.oid AND ds.classoid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND ds.objsubid = 0
WHERE p.prokind IN ('f', 'p')
  AND p.oid IN (SELECT oid FROM scope_proc)
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass
                    AND d.objid = p.oid AND d.deptype IN ('e', 'i'))
ORDER BY 1, 2, 3;
