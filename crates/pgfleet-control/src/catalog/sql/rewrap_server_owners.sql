UPDATE pgfleet.server_owners SET password_key = $2, key_id = $3 WHERE server = $1 AND key_id = $4
