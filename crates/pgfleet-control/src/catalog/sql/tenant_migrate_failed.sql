-- Tenants a fleet rollout failed on: their error, and the version they reached when it is the
-- target (their migrations applied, something after them failed).
UPDATE pgfleet.tenants t SET migrate_error = u.error, schema_version = coalesce(u.version, t.schema_version),
       updated_at = now()
FROM unnest($1::text[], $2::text[], $3::text[]) AS u(id, error, version) WHERE t.id = u.id
