-- A dashboard session of token $2 (its secret's digest $1); sessions idle longer than $3 seconds go.
WITH gone AS (DELETE FROM pgfleet.sessions WHERE last_seen < now() - make_interval(secs => $3))
INSERT INTO pgfleet.sessions (digest, token_name) VALUES ($1, $2)
