-- The roles a fleet has on server $1: its tenants' and its owner role.
SELECT role_name FROM pgfleet.tenants WHERE server = $1
UNION ALL SELECT role_name FROM pgfleet.server_owners WHERE server = $1
