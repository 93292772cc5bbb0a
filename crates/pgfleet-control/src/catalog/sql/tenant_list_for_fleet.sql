-- The tenants a fleet operation works on: every ready one ($1 empty), or those with the keys $1.
SELECT key, id, mode, state, step, server, database_name, schema_name, role_name,
       schema_version, last_error, created_at::text AS created_at, migrate_error, health,
       health_checked_at::text AS health_checked_at, health_latency_ms, health_error FROM pgfleet.tenants
WHERE (cardinality($1::text[]) = 0 AND state = 'ready') OR key = ANY($1)
ORDER BY created_at, id
