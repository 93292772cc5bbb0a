-- A provisioning step failed: its error, and `failed` when it gave up ($3); returns the key.
UPDATE pgfleet.tenants SET last_error = $2, updated_at = now(),
       state = CASE WHEN $3 THEN 'failed' ELSE state END
WHERE id = $1
RETURNING key
