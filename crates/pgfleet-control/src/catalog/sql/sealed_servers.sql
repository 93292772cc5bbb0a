-- Server admin URLs not sealed with master key $1.
SELECT name, url_sealed, url_key, key_id FROM pgfleet.servers WHERE key_id <> $1
