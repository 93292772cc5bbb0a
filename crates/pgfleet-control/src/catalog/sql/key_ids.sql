-- The master keys that sealed the catalog's secrets.
SELECT key_id FROM pgfleet.servers UNION SELECT key_id FROM pgfleet.tenants WHERE key_id IS NOT NULL
UNION SELECT key_id FROM pgfleet.server_owners ORDER BY 1
