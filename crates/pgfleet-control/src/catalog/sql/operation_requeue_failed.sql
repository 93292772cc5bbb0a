UPDATE pgfleet.operations SET state = 'queued', attempts = 0, not_before = now(), lease_owner = NULL
WHERE idempotency_key = $1 AND state = 'failed'
