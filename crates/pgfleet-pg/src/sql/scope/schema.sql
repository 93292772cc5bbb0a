-- Scope: the objects of one schema, named by the setting pgfleet.only_schema (a tenant of a shared
-- database). Prepended to the queries of src/sql/ instead of database.sql. The objects are found
-- through their dependency on the schema: pg_depend is indexed by the object depended on, while
-- pg_class, pg_type and pg_proc have no index on the schema alone, so reading one schema costs
-- the same beside 10 or 10,000 others. Every relation, type and function records that dependency
-- (initdb pins only the pg_* schemas, never public, so it holds there too). Indexes, constraints,
-- triggers and policies are read through their table.
WITH scope_ns AS (
    SELECT n.oid FROM pg_catalog.pg_namespace n
    WHERE n.nspname = pg_catalog.current_setting('pgfleet.only_schema')
      AND n.nspname !~ '^pg_' AND n.nspname NOT IN ('information_schema', 'pgfleet_migrate')
), scope_rel AS (
    SELECT d.objid AS oid FROM pg_catalog.pg_depend d
    WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
      AND d.refobjid = (SELECT oid FROM scope_ns) AND d.refobjsubid = 0
      AND d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND d.deptype = 'n'
), scope_type AS (
    SELECT d.objid AS oid FROM pg_catalog.pg_depend d
    WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
      AND d.refobjid = (SELECT oid FROM scope_ns) AND d.refobjsubid = 0
      AND d.classid = 'pg_catalog.pg_type'::pg_catalog.regclass AND d.deptype = 'n'
), scope_proc AS (
    SELECT d.objid AS oid FROM pg_catalog.pg_depend d
    WHERE d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
      AND d.refobjid = (SELECT oid FROM scope_ns) AND d.refobjsubid = 0
      AND d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND d.deptype = 'n'
)
