-- A step of operation $1 failed: queued again after $3 seconds, or failed for good ($2).
UPDATE pgfleet.operations SET state = CASE WHEN $2 THEN 'failed' ELSE 'queued' END,
       not_before = now() + make_interval(secs => $3), last_error = $4, lease_owner = NULL,
       finished_at = CASE WHEN $2 THEN now() END
WHERE id = $1
