-- A tenant as its provisioning reads it: the row, the server asked for, the sealed password.
SELECT key, id, mode, state, step, server, database_name, schema_name, role_name,
       schema_version, last_error, created_at::text AS created_at, migrate_error, health,
       health_checked_at::text AS health_checked_at, health_latency_ms, health_error, requested_server, password_sealed, password_key, key_id FROM pgfleet.tenants WHERE id = $1
