INSERT INTO pgfleet.events (tenant_id, tenant_key, kind, detail) VALUES ($1, $2, $3, $4::text::jsonb)
