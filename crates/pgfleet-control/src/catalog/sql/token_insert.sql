-- $1 name, $2 scope, $3 SHA-256 digest of the token. No row when the name is taken.
INSERT INTO pgfleet.tokens (name, scope, digest)
VALUES ($1, $2, $3)
ON CONFLICT (name) DO NOTHING
RETURNING to_char(created_at AT TIME ZONE 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS"Z"')
