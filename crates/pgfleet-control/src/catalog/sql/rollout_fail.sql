UPDATE pgfleet.rollouts SET finished_at = now(), state = 'failed' WHERE id = $1
