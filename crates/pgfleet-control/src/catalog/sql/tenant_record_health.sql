-- A health round's results ($1 ids, $2 health, $3 latency in ms, $4 errors), and a `tenant.health`
-- event for each tenant whose health changed (a first check that finds it healthy is no change
-- worth an event).
WITH u AS (
    SELECT u.id, u.health, u.latency, u.error, t.key, t.health AS before
    FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[]) AS u(id, health, latency, error)
    JOIN pgfleet.tenants t ON t.id = u.id
    FOR UPDATE OF t
), changed AS (
    UPDATE pgfleet.tenants t SET health = u.health, health_latency_ms = u.latency,
           health_error = u.error, health_checked_at = now()
    FROM u
    WHERE t.id = u.id
    RETURNING t.id, u.key, u.before, u.health, u.error
)
INSERT INTO pgfleet.events (tenant_id, tenant_key, kind, detail)
SELECT id, key, 'tenant.health', jsonb_build_object('from', before, 'to', health, 'error', error)
FROM changed
WHERE before <> health AND NOT (before = 'unknown' AND health = 'healthy')
