-- The objects of a tenant that the fleet's owner role does not own yet, with the kind `ALTER … OWNER
-- TO` needs: $1 its schemas (NULL: every schema of the database, for a database tenant; `public`
-- itself belongs to the database's owner and is only granted to), $2 the owner role. Left out:
-- members of extensions, what follows its table (indexes, owned sequences, row types) and array
-- and multirange types (they follow their element type).
WITH scope_ns AS (
    SELECT n.oid, n.nspname, n.nspowner FROM pg_catalog.pg_namespace n
    WHERE CASE WHEN $1::text[] IS NULL
               THEN n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
               ELSE n.nspname = ANY ($1::text[]) END
), owner AS (
    SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $2
), scope_obj AS (
    SELECT d.classid, d.objid FROM scope_ns n
    JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
         AND d.refobjid = n.oid AND d.refobjsubid = 0 AND d.deptype = 'n'
    WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_depend e WHERE e.classid = d.classid AND e.objid = d.objid AND e.deptype = 'e')
)
SELECT 'SCHEMA', pg_catalog.format('%I', n.nspname)
FROM scope_ns n WHERE n.nspname <> 'public' AND n.nspowner <> (SELECT oid FROM owner)
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend e WHERE e.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                  AND e.objid = n.oid AND e.deptype = 'e')
UNION ALL
SELECT CASE c.relkind WHEN 'v' THEN 'VIEW' WHEN 'm' THEN 'MATERIALIZED VIEW' WHEN 'S' THEN 'SEQUENCE'
                      WHEN 'f' THEN 'FOREIGN TABLE' WHEN 'c' THEN 'TYPE' ELSE 'TABLE' END,
       pg_catalog.format('%I.%I', ns.nspname, c.relname)
FROM scope_obj o
JOIN pg_catalog.pg_class c ON o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = o.objid
JOIN pg_catalog.pg_namespace ns ON ns.oid = c.relnamespace
WHERE c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f', 'c') AND c.relowner <> (SELECT oid FROM owner)
  AND NOT (c.relkind = 'S' AND EXISTS (SELECT FROM pg_catalog.pg_depend a
           WHERE a.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND a.objid = c.oid
             AND a.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass AND a.deptype IN ('a', 'i')))
UNION ALL
SELECT CASE t.typtype WHEN 'd' THEN 'DOMAIN' ELSE 'TYPE' END, pg_catalog.format('%I.%I', ns.nspname, t.typname)
FROM scope_obj o
JOIN pg_catalog.pg_type t ON o.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND t.oid = o.objid
JOIN pg_catalog.pg_namespace ns ON ns.oid = t.typnamespace
WHERE t.typowner <> (SELECT oid FROM owner) AND t.typrelid = 0 AND t.typtype IN ('b', 'd', 'e', 'r')
  AND NOT EXISTS (SELECT FROM pg_catalog.pg_type e WHERE e.typarray = t.oid)
UNION ALL
SELECT CASE p.prokind WHEN 'a' THEN 'AGGREGATE' ELSE 'ROUTINE' END, p.oid::pg_catalog.regprocedure::text
FROM scope_obj o
JOIN pg_catalog.pg_proc p ON o.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = o.objid
WHERE p.proowner <> (SELECT oid FROM owner)
ORDER BY 1, 2
