DELETE FROM pgfleet.tenants WHERE id = $1
