SELECT key, id, mode, state, step, server, database_name, schema_name, role_name,
       schema_version, last_error, created_at::text AS created_at, migrate_error, health,
       health_checked_at::text AS health_checked_at, health_latency_ms, health_error FROM pgfleet.tenants WHERE key = $1
