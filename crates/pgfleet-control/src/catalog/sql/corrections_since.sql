SELECT EXISTS (SELECT FROM pgfleet.events WHERE tenant_id = $1 AND kind = 'tenant.correction' AND at >= $2)
