INSERT INTO pgfleet.target_models (version, pg_major, model) VALUES ($1, $2, $3::text::jsonb)
ON CONFLICT (version, pg_major) DO NOTHING
