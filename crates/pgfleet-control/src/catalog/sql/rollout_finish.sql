UPDATE pgfleet.rollouts SET finished_at = now(), state = CASE WHEN $2 > 0 OR $6 > 0 THEN 'failed' ELSE 'done' END,
       failed = $2, migrated = $3, up_to_date = $4, not_run = $5
WHERE id = $1
