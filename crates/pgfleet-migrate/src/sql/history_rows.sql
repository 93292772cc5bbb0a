-- The history of one scope ($1), oldest first.
SELECT version, name, checksum, state, statements_done, statements_total, done_hash,
       started_at::text AS started_at, finished_at::text AS finished_at, duration_ms, last_error
FROM pgfleet_migrate.history
WHERE scope = $1
ORDER BY version
