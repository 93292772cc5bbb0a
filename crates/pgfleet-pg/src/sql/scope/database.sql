-- Scope: every object of the database's user schemas (not pg_*, information_schema or
-- pgfleet_migrate). Prepended to the queries of src/sql/ for a whole database.
WITH scope_ns AS (
    SELECT n.oid FROM pg_catalog.pg_namespace n
    WHERE n.nspname !~ '^pg_' AND n.nspname NOT IN ('information_schema', 'pgfleet_migrate')
), scope_rel AS (
    SELECT c.oid FROM pg_catalog.pg_class c WHERE c.relnamespace IN (SELECT oid FROM scope_ns)
), scope_type AS (
    SELECT t.oid FROM pg_catalog.pg_type t WHERE t.typnamespace IN (SELECT oid FROM scope_ns)
), scope_proc AS (
    SELECT p.oid FROM pg_catalog.pg_proc p WHERE p.pronamespace IN (SELECT oid FROM scope_ns)
)
