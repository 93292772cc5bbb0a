INSERT INTO pgfleet.servers (name, url_sealed, url_key, key_id, display_url, capacity, weight, version, has_vector)
VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9)
