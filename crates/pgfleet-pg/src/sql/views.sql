-- Views and materialized views in user schemas, not owned by an extension. Output columns come as
-- two arrays in attnum order. What the view reads (the relations its _RETURN rule depends on, other
-- than itself) comes as two arrays in one order, limited to relations introspection reads (tables,
-- views, materialized views in user schemas, not of an extension): system catalogs and extension
-- objects are never dropped and recreated by pgfleet.
SELECT n.nspname::text AS schema,
       c.relname::text AS name,
       c.relkind = 'm' AS materialized,
       pg_catalog.pg_get_viewdef(c.oid) AS definition,
       COALESCE(col.names, '{}') AS column_names,
       COALESCE(col.types, '{}') AS column_types,
       COALESCE(c.reloptions, '{}') AS options,
       COALESCE(dep.schemas, '{}') AS dep_schemas,
       COALESCE(dep.names, '{}') AS dep_names,
       ds.description AS comment
FROM scope_rel
JOIN pg_catalog.pg_class c ON c.oid = scope_rel.oid
JOIN pg_catalog.pg_namespace n ON n.oid = c.relnamespace
LEFT JOIN LATERAL (
    SELECT pg_catalog.array_agg(a.attname::text ORDER BY a.attnum) AS names,
           pg_catalog.array_agg(pg_catalog.format_type(a.atttypid, a.atttypmod) ORDER BY a.attnum) AS types
    FROM pg_catalog.pg_attribute a
    WHERE a.attrelid = c.oid AND a.attnum > 0 AND NOT a.attisdropped
) col ON true
LEFT JOIN LATERAL (
    SELECT pg_catalog.array_agg(rn.nspname::text ORDER BY rc.oid) AS schemas,
           pg_catalog.array_agg(rc.relname::text ORDER BY rc.oid) AS names
    FROM pg_catalog.pg_class rc
    JOIN pg_catalog.pg_namespace rn ON rn.oid = rc.relnamespace
    WHERE rc.oid IN (SELECT d.refobjid
                     FROM pg_catalog.pg_rewrite rw
                     JOIN pg_catalog.pg_depend d
                       ON d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass AND d.objid = rw.oid
                     WHERE rw.ev_class = c.oid
                       AND d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                       AND d.refobjid <> c.oid)
      AND rc.relkind IN ('r', 'p', 'v', 'm')
      AND rn.nspname !~ '^pg_' AND rn.nspname NOT IN ('information_schema', 'pgfleet_migrate')
      AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend e
                      WHERE e.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                        AND e.objid = rc.oid AND e.deptype = 'e')
) dep ON true
LEFT JOIN pg_catalog.pg_description ds
       ON ds.objoid = c.oid AND ds.classoid = 'pg_catalog.pg_class'::pg_catalog.regclass AND ds.objsubid = 0
WHERE c.relkind IN ('v', 'm')
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend d
                  WHERE d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
                    AND d.objid = c.oid AND d.deptype = 'e')
ORDER BY 1, 2;
