UPDATE pgfleet.operations SET state = 'done', finished_at = now(), last_error = NULL, lease_owner = NULL WHERE id = $1
