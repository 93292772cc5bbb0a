-- Tenants that need attention, most recent first: failed, a failed migration, or not healthy. $1 how many.
SELECT key, state, coalesce(last_error, migrate_error, health_error, health) AS problem,
       coalesce(health_checked_at, created_at)::text AS at
FROM pgfleet.tenants
WHERE state = 'failed' OR migrate_error IS NOT NULL OR health IN ('degraded', 'unreachable')
ORDER BY coalesce(health_checked_at, created_at) DESC
LIMIT $1
