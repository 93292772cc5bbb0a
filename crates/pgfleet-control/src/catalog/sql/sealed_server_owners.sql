-- Owner-role passwords not sealed with master key $1.
SELECT server, password_sealed, password_key, key_id FROM pgfleet.server_owners WHERE key_id <> $1
