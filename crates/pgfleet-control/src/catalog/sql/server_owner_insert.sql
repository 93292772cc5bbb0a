-- The owner role of server $1; racing processes: the first row wins, the others read it.
INSERT INTO pgfleet.server_owners (server, role_name, password_sealed, password_key, key_id)
VALUES ($1, $2, $3, $4, $5) ON CONFLICT (server) DO NOTHING
