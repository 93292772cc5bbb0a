-- A new tenant; nothing when the key exists (a racing caller inserted it first).
-- $1 id, $2 key, $3 mode, $4 requested server, $5 database, $6 schema, $7 role.
INSERT INTO pgfleet.tenants (id, key, mode, requested_server, database_name, schema_name, role_name)
VALUES ($1, $2, $3, $4, $5, $6, $7)
ON CONFLICT (key) DO NOTHING
RETURNING key, id, mode, state, step, server, database_name, schema_name, role_name,
       schema_version, last_error, created_at::text AS created_at, migrate_error, health,
       health_checked_at::text AS health_checked_at, health_latency_ms, health_error
