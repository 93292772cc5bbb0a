-- The dashboard's overview in one round trip: tenants by state, by health, and per server with its
-- capacity (JSON text).
SELECT json_build_object(
  'by_state', (SELECT coalesce(json_object_agg(state, n), '{}') FROM
                 (SELECT state, count(*) AS n FROM pgfleet.tenants GROUP BY state) x),
  'by_health', (SELECT coalesce(json_object_agg(health, n), '{}') FROM
                 (SELECT health, count(*) AS n FROM pgfleet.tenants WHERE state = 'ready' GROUP BY health) x),
  'total', (SELECT count(*) FROM pgfleet.tenants)
)::text
