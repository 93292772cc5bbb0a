-- A failed tenant is provisioned again.
UPDATE pgfleet.tenants SET state = 'provisioning', updated_at = now() WHERE id = $1 AND state = 'failed'
