UPDATE pgfleet.tenants SET password_key = $2, key_id = $3 WHERE id = $1 AND key_id = $4
