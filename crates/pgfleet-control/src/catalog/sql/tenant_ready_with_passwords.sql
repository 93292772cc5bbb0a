-- Ready tenants with their sealed passwords, newest first, at most $1 (a router's preload).
SELECT key, id, mode, state, step, server, database_name, schema_name, role_name,
       schema_version, last_error, created_at::text AS created_at, migrate_error, health,
       health_checked_at::text AS health_checked_at, health_latency_ms, health_error,
       password_sealed, password_key, key_id
FROM pgfleet.tenants WHERE state = 'ready'
ORDER BY created_at DESC, id
LIMIT $1
