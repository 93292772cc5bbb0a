SELECT role_name, password_sealed, password_key, key_id FROM pgfleet.server_owners WHERE server = $1
