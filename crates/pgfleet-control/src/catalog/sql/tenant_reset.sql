-- `init --tenant KEY --reset`: provisioned again from its role step (or from placement).
UPDATE pgfleet.tenants SET state = 'provisioning', step = CASE WHEN server IS NULL THEN 'place' ELSE 'role' END,
       schema_version = NULL, last_error = NULL, updated_at = now()
WHERE id = $1
