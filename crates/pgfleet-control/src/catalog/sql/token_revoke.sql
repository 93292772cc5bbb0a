-- $1 name. Returns whether the token was live (false: already revoked); no row: no such token.
WITH t AS (SELECT name, revoked_at IS NULL AS live FROM pgfleet.tokens WHERE name = $1 FOR UPDATE)
UPDATE pgfleet.tokens SET revoked_at = coalesce(pgfleet.tokens.revoked_at, now())
FROM t WHERE pgfleet.tokens.name = t.name
RETURNING t.live
