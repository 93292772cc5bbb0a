UPDATE pgfleet.tenants SET last_error = $2, updated_at = now() WHERE id = $1
