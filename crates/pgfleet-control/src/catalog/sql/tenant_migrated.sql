-- Tenants a fleet rollout brought to the target $2.
UPDATE pgfleet.tenants SET schema_version = $2, migrate_error = NULL, updated_at = now() WHERE id = ANY($1)
