-- The rights PUBLIC holds on the catalog database (none after `pgfleet init`).
SELECT a.privilege_type::text FROM pg_catalog.pg_database d,
       pg_catalog.aclexplode(coalesce(d.datacl, pg_catalog.acldefault('d', d.datdba))) a
WHERE d.datname = pg_catalog.current_database() AND a.grantee = 0 ORDER BY 1
