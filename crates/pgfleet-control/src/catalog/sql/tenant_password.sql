SELECT password_sealed, password_key, key_id FROM pgfleet.tenants WHERE id = $1
