-- The current target ($1 NULL), or the target of version $1.
SELECT version, dir_hash, files::text FROM pgfleet.targets
WHERE CASE WHEN $1::text IS NULL THEN is_current ELSE version = $1 END
