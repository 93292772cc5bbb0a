UPDATE pgfleet.tenants t SET health = u.health, health_latency_ms = u.latency, health_error = u.error,
       health_checked_at = now()
FROM unnest($1::text[], $2::text[], $3::float8[], $4::text[]) AS u(id, health, latency, error)
WHERE t.id = u.id
