-- Every trigger on a tenant's relations, with the text PostgreSQL prints for it (run with an empty
-- search_path, as introspection is, so it compares with the target model): $1 its schemas (NULL:
-- every schema of the database). Internal triggers (foreign keys) and partition clones are left
-- out, as in the model.
WITH scope_ns AS (
    SELECT n.oid FROM pg_catalog.pg_namespace n
    WHERE CASE WHEN $1::text[] IS NULL
               THEN n.nspname !~ '^pg_' AND n.nspname NOT IN ('information_schema', 'pgfleet_migrate')
               ELSE n.nspname = ANY ($1::text[]) END
), scope_rel AS (
    SELECT d.objid AS oid FROM scope_ns n
    JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
         AND d.refobjid = n.oid AND d.refobjsubid = 0 AND d.deptype = 'n'
         AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
)
SELECT ns.nspname::text AS schema, c.relname::text AS relation, c.relkind IN ('r', 'p') AS is_table,
       t.tgname::text AS name, pg_catalog.pg_get_triggerdef(t.oid) AS definition,
       pn.nspname::text AS function_schema, p.proname::text AS function_name
FROM scope_rel s
JOIN pg_catalog.pg_class c ON c.oid = s.oid
JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
JOIN pg_catalog.pg_trigger t ON t.tgrelid = c.oid
JOIN pg_catalog.pg_proc p ON p.oid = t.tgfoid
JOIN pg_catalog.pg_namespace pn ON pn.oid = p.pronamespace
WHERE NOT t.tgisinternal AND t.tgparentid = 0
ORDER BY 1, 2, 4
