-- The live session with digest $1, used within $2 seconds, whose token is not revoked: its token's
-- name and scope. Marks it used (at most every 30 s, so a page view rarely writes).
WITH s AS (
    SELECT s.digest, s.last_seen, t.name, t.scope
    FROM pgfleet.sessions s JOIN pgfleet.tokens t ON t.name = s.token_name
    WHERE s.digest = $1 AND t.revoked_at IS NULL AND s.last_seen > now() - make_interval(secs => $2)
), touched AS (
    UPDATE pgfleet.sessions SET last_seen = now()
    WHERE digest = (SELECT digest FROM s WHERE last_seen < now() - interval '30 seconds')
)
SELECT name, scope FROM s
