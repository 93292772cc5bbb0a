-- Operations that may run now (of tenant $1, or any), oldest first.
SELECT id, tenant_id FROM pgfleet.operations
WHERE ((state = 'queued' AND not_before <= now()) OR state = 'running')
  AND ($1::text IS NULL OR tenant_id = $1) AND tenant_id IS NOT NULL
ORDER BY id LIMIT 50
