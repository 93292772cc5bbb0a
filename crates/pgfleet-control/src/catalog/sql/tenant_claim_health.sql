-- Claims ready tenants due for a health check ($1 seconds since the last one), at most $2, and
-- stamps them checked at once, so processes sharing the catalog split the fleet.
WITH due AS (
    SELECT id FROM pgfleet.tenants
    WHERE state = 'ready'
      AND (health_checked_at IS NULL OR health_checked_at <= now() - make_interval(secs => $1))
    ORDER BY health_checked_at NULLS FIRST
    LIMIT $2 FOR UPDATE SKIP LOCKED)
UPDATE pgfleet.tenants t SET health_checked_at = now() FROM due WHERE t.id = due.id
RETURNING t.key, t.id, t.mode, t.state, t.step, t.server, t.database_name, t.schema_name, t.role_name,
          t.schema_version, t.last_error, t.created_at::text AS created_at, t.migrate_error, t.health,
          t.health_checked_at::text AS health_checked_at, t.health_latency_ms, t.health_error, t.password_sealed, t.password_key, t.key_id
