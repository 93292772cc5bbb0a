-- Tenant passwords not sealed with master key $1.
SELECT id, password_sealed, password_key, key_id FROM pgfleet.tenants WHERE key_id IS NOT NULL AND key_id <> $1
