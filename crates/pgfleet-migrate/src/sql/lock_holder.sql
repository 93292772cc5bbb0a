-- Who holds the advisory lock with key $1 (bigint): pid, application name, since when, what it runs.
SELECT a.pid, coalesce(a.application_name, '') AS application_name,
       coalesce(a.backend_start::text, '') AS since, coalesce(a.query, '') AS query
FROM pg_catalog.pg_locks l
JOIN pg_catalog.pg_stat_activity a ON a.pid = l.pid
WHERE l.locktype = 'advisory' AND l.granted AND l.objsubid = 1
  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = pg_catalog.current_database())
  AND ((l.classid::bigint << 32) | l.objid::bigint) = $1
LIMIT 1
