INSERT INTO pgfleet.events (tenant_id, tenant_key, kind, detail)
SELECT u.id, u.key, $1, u.detail::jsonb FROM unnest($2::text[], $3::text[], $4::text[]) AS u(id, key, detail)
