-- A batch of a running rollout's outcomes: $1 id, then how many failed, migrated, were up to date,
-- were not run. The end of the run writes the final counts.
UPDATE pgfleet.rollouts SET failed = failed + $2, migrated = migrated + $3,
       up_to_date = up_to_date + $4, not_run = not_run + $5
WHERE id = $1 AND state = 'running'
