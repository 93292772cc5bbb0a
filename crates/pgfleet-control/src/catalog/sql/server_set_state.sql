UPDATE pgfleet.servers SET state = $2 WHERE name = $1
