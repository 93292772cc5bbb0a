-- A page of tenants in key order: $1 after this key (NULL: from the start), filters $2 state,
-- $3 server, $4 mode, $5 version, $6 a part of the key (each NULL: any), $7 how many.
SELECT key, id, mode, state, step, server, database_name, schema_name, role_name,
       schema_version, last_error, created_at::text AS created_at, migrate_error, health,
       health_checked_at::text AS health_checked_at, health_latency_ms, health_error
FROM pgfleet.tenants
WHERE ($1::text IS NULL OR key > $1)
  AND ($2::text IS NULL OR state = $2)
  AND ($3::text IS NULL OR server = $3)
  AND ($4::text IS NULL OR mode = $4)
  AND ($5::text IS NULL OR schema_version = $5)
  AND ($6::text IS NULL OR strpos(key, $6) > 0)
ORDER BY key
LIMIT $7
