-- Rollouts $1 (locked by this session) are abandoned, unless one finished meanwhile.
UPDATE pgfleet.rollouts SET state = 'abandoned', finished_at = now()
WHERE id = ANY($1) AND state = 'running' RETURNING id
