-- A page of events, newest first: $1 older than this id (NULL: the newest), $2 of this tenant key,
-- $3 of this kind or kind family (`tenant` matches `tenant.ready`), $4 of this rollout, $5 how many.
SELECT id, at::text, tenant_key, kind, actor, detail::text
FROM pgfleet.events
WHERE ($1::bigint IS NULL OR id < $1)
  AND ($2::text IS NULL OR tenant_key = $2)
  AND ($3::text IS NULL OR kind = $3 OR starts_with(kind, $3 || '.'))
  AND ($4::bigint IS NULL OR (kind LIKE 'tenant.migrat%' AND detail->>'rollout' = $4::text))
ORDER BY id DESC
LIMIT $5
