-- An event made on behalf of $1 (e.g. `token:ops`): tenant id $2, key $3, kind $4, detail $5.
INSERT INTO pgfleet.events (actor, tenant_id, tenant_key, kind, detail) VALUES ($1, $2, $3, $4, $5::text::jsonb)
