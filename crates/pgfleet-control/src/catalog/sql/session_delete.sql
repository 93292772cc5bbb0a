-- Signs a session out: $1 its digest.
DELETE FROM pgfleet.sessions WHERE digest = $1
