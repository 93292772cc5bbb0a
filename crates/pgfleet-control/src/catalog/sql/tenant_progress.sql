-- A provisioning step done: the tenant's next step and state, and the operation's lease, in one
-- round trip; the tenant becomes ready and its operation done in one statement, so nobody sees one
-- without the other. $1 tenant, $2 next step, $3 state, $4 operation, $5 lease seconds.
WITH progress AS (
    UPDATE pgfleet.tenants SET step = $2, state = $3,
           last_error = CASE WHEN $3 = 'ready' THEN NULL ELSE last_error END, updated_at = now()
    WHERE id = $1)
UPDATE pgfleet.operations SET lease_until = now() + make_interval(secs => $5),
       state = CASE WHEN $3 = 'ready' THEN 'done' ELSE state END,
       finished_at = CASE WHEN $3 = 'ready' THEN now() ELSE finished_at END,
       last_error = CASE WHEN $3 = 'ready' THEN NULL ELSE last_error END,
       lease_owner = CASE WHEN $3 = 'ready' THEN NULL ELSE lease_owner END
WHERE id = $4
