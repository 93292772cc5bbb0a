UPDATE pgfleet.tenants SET password_sealed = $2, password_key = $3, key_id = $4, updated_at = now() WHERE id = $1
