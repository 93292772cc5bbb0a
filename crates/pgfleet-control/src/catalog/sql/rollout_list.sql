-- Rollouts, newest first: $1 older than this id (NULL: the newest), $2 only this one, $3 how many.
SELECT id, target, owner, started_at::text, finished_at::text, state, total, migrated, up_to_date,
       failed, not_run, options::text
FROM pgfleet.rollouts
WHERE ($1::bigint IS NULL OR id < $1) AND ($2::bigint IS NULL OR id = $2)
ORDER BY id DESC
LIMIT $3
