-- $1 SHA-256 digest. A live token's name and scope.
SELECT name, scope FROM pgfleet.tokens WHERE digest = $1 AND revoked_at IS NULL
