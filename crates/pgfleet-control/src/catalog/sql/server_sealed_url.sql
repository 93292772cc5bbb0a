SELECT url_sealed, url_key, key_id FROM pgfleet.servers WHERE name = $1
