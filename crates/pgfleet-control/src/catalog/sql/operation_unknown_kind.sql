UPDATE pgfleet.operations SET state = 'failed', last_error = 'unknown operation kind', finished_at = now() WHERE id = $1
