-- On shutdown: operations leased to worker $1 go back to the queue.
UPDATE pgfleet.operations SET state = 'queued', lease_owner = NULL, not_before = now()
WHERE lease_owner = $1 AND state = 'running'
