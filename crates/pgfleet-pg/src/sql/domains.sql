-- Domains in user schemas, not owned by an extension. The default is deparsed from typdefaultbin
-- (typdefault holds the text printed under the search_path of CREATE DOMAIN). Checks are the
-- CHECK constraints only: PostgreSQL 17+ also stores the domain's NOT NULL as a 'n' row.
SELECT n.nspname::text AS schema,
       t.typname::text AS name,
       pg_catalog.format_type(t.typbasetype, t.typtypmod) AS base_type,
       pg_catalog.pg_get_expr(t.typdefaultbin, 0) AS "default",
       t.typnotnull AS not_null,
       CASE WHEN t.typcollation <> 0 AND t.typcollation <> bt.typcollation
            THEN pg_catalog.quote_ident(cn.nspname) || '.' || pg_catalog.quote_ident(co.collname)
       END AS collation,
       COALESCE(k.names, '{}') AS check_names,
       COALESCE(k.defs, '{}') AS check_defs,
       ds.description AS comment
FROM pg_catalog.pg_type t
JOIN pg_catalog.pg_namespace n ON n.oid = t.typnamespace
JOIN pg_catalog.pg_type bt ON bt.oid = t.typbasetype
LEFT JOIN pg_catalog.pg_collation co ON co.oid = t.typcollation
LEFT JOIN pg_catalog.pg_namespace cn ON cn.oid = co.collnamespace
LEFT JOIN LATERAL (
    SELECT pg_catalog.array_agg(c.conname::text ORDER BY c.conname) AS names,
           pg_catalog.array_agg(pg_catalog.pg_get_constraintdef(c.oid) ORDER BY c.conname) AS defs
    FROM pg_catalog.pg_constraint c
    WHERE c.contypid = t.oid AND c.contype = 'c'
) k ON true
LEFT JOIN pg_catalog.pg_description ds
       ON ds.objoid = t.oid AND ds.classoid = 'pg_catalog.pg_type'::pg_catalog.regclass AND ds.objsubid = 0
WHERE t.typtype = 'd'
  AND t.oid IN (SELECT oid FROM scope_type)
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass
                    AND d.objid = t.oid AND d.deptype = 'e')
ORDER BY 1, 2;
