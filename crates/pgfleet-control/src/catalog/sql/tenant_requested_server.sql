SELECT requested_server FROM pgfleet.tenants WHERE id = $1
