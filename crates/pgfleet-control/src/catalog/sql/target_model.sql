SELECT model::text FROM pgfleet.target_models WHERE version = $1 AND pg_major = $2
