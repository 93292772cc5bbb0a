INSERT INTO pgfleet.operations (kind, tenant_id, idempotency_key) VALUES ('provision', $1, $2)
ON CONFLICT (idempotency_key) DO NOTHING
