-- A target is recorded only after its migrations were replayed in a shadow database: `validated`.
-- Targets recorded by older pgfleet versions count as validated when a tenant reached them or their
-- model was built (both replayed them); new tenants are provisioned to the newest validated target.
ALTER TABLE pgfleet.targets ADD COLUMN validated boolean NOT NULL DEFAULT false;
UPDATE pgfleet.targets t SET validated = true
WHERE EXISTS (SELECT FROM pgfleet.target_models m WHERE m.version = t.version)
   OR EXISTS (SELECT FROM pgfleet.tenants n WHERE n.schema_version = t.version);
