-- Which of these tenants of one database need `secure` before pgfleet runs anything on their
-- objects, in one round trip for a whole chunk of schema tenants: $1 their roles, $2 their schemas
-- (same order; NULL for a database tenant: every schema of the database), $3 the fleet's owner
-- role, $4 the one role a tenant role may be a member of ('' for none). The same conditions as
-- findings.sql and not_owned.sql, as one yes or no per tenant (triggers are not compared with the
-- target here: without TRIGGER and ownership a tenant cannot have attached any since it was
-- secured).
SELECT x.role,
       r.rolsuper OR r.rolcreaterole OR r.rolcreatedb OR r.rolreplication OR r.rolbypassrls
    OR EXISTS (SELECT FROM pg_catalog.pg_auth_members m JOIN pg_catalog.pg_roles g ON g.oid = m.roleid
               WHERE m.member = r.oid AND g.rolname <> $4)
    OR EXISTS (SELECT FROM pg_catalog.pg_db_role_setting s WHERE s.setrole = r.oid)
    OR pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'TEMPORARY')
    OR pg_catalog.has_database_privilege(r.oid, pg_catalog.current_database(), 'CREATE')
    OR EXISTS (SELECT FROM pg_catalog.pg_namespace n
               WHERE (CASE WHEN x.schema IS NULL THEN n.nspname !~ '^pg_' ELSE n.nspname = x.schema END
                      OR n.nspname = 'public'
                      OR n.oid IN (SELECT sd.objid FROM pg_catalog.pg_shdepend sd
                                   WHERE sd.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass
                                     AND sd.refobjid IN (r.oid, (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $4))
                                     AND sd.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass))
                 AND pg_catalog.has_schema_privilege(r.oid, n.oid, 'CREATE'))
    OR EXISTS (SELECT FROM pg_catalog.pg_shdepend sd
               WHERE sd.refclassid = 'pg_catalog.pg_authid'::pg_catalog.regclass AND sd.refobjid = r.oid
                 AND sd.deptype = 'o'
                 AND sd.classid NOT IN ('pg_catalog.pg_largeobject'::pg_catalog.regclass,
                                        'pg_catalog.pg_default_acl'::pg_catalog.regclass)
                 AND sd.dbid IN (0, (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())))
    OR EXISTS (
        SELECT FROM pg_catalog.pg_namespace n
        JOIN pg_catalog.pg_depend d ON d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
             AND d.refobjid = n.oid AND d.refobjsubid = 0 AND d.deptype = 'n'
        LEFT JOIN pg_catalog.pg_class c ON d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass AND c.oid = d.objid
        LEFT JOIN pg_catalog.pg_proc p ON d.classid = 'pg_catalog.pg_proc'::pg_catalog.regclass AND p.oid = d.objid
        WHERE CASE WHEN x.schema IS NULL THEN n.nspname !~ '^pg_' AND n.nspname <> 'information_schema'
                   ELSE n.nspname = x.schema END
          AND ((c.oid IS NOT NULL AND c.relkind IN ('r', 'p', 'v', 'm', 'f') AND
                (c.relowner <> o.oid OR pg_catalog.has_table_privilege(r.oid, c.oid, 'TRIGGER')))
               OR (p.oid IS NOT NULL AND p.proowner <> o.oid))
          AND NOT EXISTS (SELECT FROM pg_catalog.pg_depend e WHERE e.classid = d.classid AND e.objid = d.objid AND e.deptype = 'e'))
    OR EXISTS (SELECT FROM pg_catalog.pg_namespace n
               WHERE n.nspname = x.schema AND n.nspowner <> o.oid)
FROM unnest($1::text[], $2::text[]) AS x(role, schema)
JOIN pg_catalog.pg_roles r ON r.rolname = x.role
CROSS JOIN (SELECT oid FROM pg_catalog.pg_roles WHERE rolname = $3) o
