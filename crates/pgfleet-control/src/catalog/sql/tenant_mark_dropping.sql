UPDATE pgfleet.tenants SET state = 'dropping', updated_at = now() WHERE id = $1
