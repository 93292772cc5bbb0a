-- A re-wrapped data key ($2, by key $3) of server $1, unless another process did it ($4: the old key).
UPDATE pgfleet.servers SET url_key = $2, key_id = $3 WHERE name = $1 AND key_id = $4
