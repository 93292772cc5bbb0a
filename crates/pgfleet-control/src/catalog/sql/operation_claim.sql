-- Claims operation $1 for worker $2 with a lease of $3 seconds, if it is still runnable.
UPDATE pgfleet.operations SET state = 'running', lease_owner = $2,
       lease_until = now() + make_interval(secs => $3), attempts = attempts + 1
WHERE id = $1 AND ((state = 'queued' AND not_before <= now()) OR state = 'running')
RETURNING kind, attempts
