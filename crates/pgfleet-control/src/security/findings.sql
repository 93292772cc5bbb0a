-- What one tenant's role holds that it must not, read in the tenant's database (the shared one for
-- a schema tenant). $1 the tenant's role, $2 its schemas (NULL: every schema of the database, for a
-- database tenant), $3 the one role the tenant role may be a member of ('' for none). Objects
-- are found through their dependency on their schema (pg_depend is indexed by it), so a tenant
-- beside thousands of others costs the same.
WITH r AS (
    SELECT oid, rolname, rolsuper, rolcreaterole, rolcreatedb, rolreplication, rolbypassrls
    FROM pg_catalog.pg_roles WHERE rolname = $1
), scope_ns AS (
    SELECT n.oid, n.nspname, n.nspowner FROM pg_catalog.pg_namespace n
    WHERE CASE WHEN $2::text[] IS NULL
               THEN n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
               ELSE n.nspname = ANY ($2::text[]) END
), scope_obj AS (
    SELECT d.classid, d.objid, n.nspname FROM scope_ns n
    JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
         AND d.refobjid = n.oid AND d.refobjsubid = 0 AND d.deptype = 'n'
), scope_rel AS (
    SELECT c.oid, c.relname, c.relkind, o.nspname FROM scope_obj o
    JOIN pg_catalog.pg_class c ON o.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = o.objid
)
SELECT
    EXISTS (SELECT FROM r) AS role_exists,
    ARRAY(SELECT a FROM r, LATERAL (VALUES
            (CASE WHEN r.rolsuper THEN 'SUPERUSER' END), (CASE WHEN r.rolcreaterole THEN 'CREATEROLE' END),
            (CASE WHEN r.rolcreatedb THEN 'CREATEDB' END), (CASE WHEN r.rolreplication THEN 'REPLICATION' END),
            (CASE WHEN r.rolbypassrls THEN 'BYPASSRLS' END)) AS v(a) WHERE a IS NOT NULL) AS attributes,
    ARRAY(SELECT g.rolname::text FROM r
          JOIN pg_catalog.pg_auth_members m ON m.member = r.oid
          JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
          WHERE g.rolname <> $3 ORDER BY 1) AS member_of,
    ARRAY(SELECT coalesce('in database ' || db.datname::text, 'everywhere') || ': '
                 || pg_catalog.array_to_string(s.setconfig, ', ')
          FROM r JOIN pg_catalog.pg_db_role_setting s ON s.setrole = r.oid
          LEFT JOIN pg_catalog.pg_database db ON db.oid = s.setdatabase ORDER BY 1) AS settings,
    CASE WHEN EXISTS (SELECT FROM r)
         THEN pg_catalog.has_database_privilege($1, pg_catalog.current_database(), 'TEMPORARY') END AS temporary,
    CASE WHEN EXISTS (SELECT FROM r)
         THEN pg_catalog.has_database_privilege($1, pg_catalog.current_database(), 'CREATE') END AS create_database,
    -- Schemas it may create in: its own, public, and those whose ACL names it or its group
    -- (pg_shdepend records every role an ACL names, indexed by the role: no scan of thousands of
    -- schemas). A schema open to PUBLIC is one of its own or public, or reported by validate.
    ARRAY(SELECT n.nspname::text FROM pg_catalog.pg_namespace n
          WHERE EXISTS (SELECT FROM r)
            AND (n.oid IN (SELECT oid FROM scope_ns) OR n.nspname = 'public'
                 OR n.oid IN (SELECT sd.objid FROM pg_catalog.pg_shdepend sd JOIN pg_catalog.pg_roles a ON a.oid = sd.refobjid
                              WHERE sd.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND a.rolname IN ($1, $3)
                                AND sd.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                                AND sd.dbid = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())))
            AND pg_catalog.has_schema_privilege($1, n.oid, 'CREATE') ORDER BY 1) AS create_in,
    ARRAY(SELECT pg_catalog.format('%I.%I', s.nspname, s.relname) FROM scope_rel s
          WHERE EXISTS (SELECT FROM r) AND s.relkind IN ('r', 'p', 'v', 'm', 'f')
            AND pg_catalog.has_table_privilege($1, s.oid, 'TRIGGER') ORDER BY 1) AS trigger_on,
    (SELECT count(*) FROM r JOIN pg_catalog.pg_shdepend sd
          ON sd.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND sd.refobjid = r.oid AND sd.deptype = 'o'
         AND sd.classid NOT IN ('pg_catalog.pg_largeobject'::pg_catalog.regclass, 'pg_catalog.pg_default_acl'::pg_catalog.regclass)
         AND sd.dbid IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())))::int AS owns
