-- A new rollout, locked on the caller's lock session by the statement that inserts it, so no
-- other process ever sees it running and unlocked. $1 lock class, $2 target, $3 owner, $4 tenants,
-- $5 its options (JSON text). No row when another rollout is running (one at a time).
INSERT INTO pgfleet.rollouts (target, owner, total, options) VALUES ($2, $3, $4, $5::text::jsonb)
ON CONFLICT ((true)) WHERE state = 'running' DO NOTHING
RETURNING id, pg_try_advisory_lock($1::int4, (id % 2147483647)::int4)
