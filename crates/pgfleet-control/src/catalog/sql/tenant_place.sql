UPDATE pgfleet.tenants SET server = $2 WHERE id = $1 AND server IS NULL
