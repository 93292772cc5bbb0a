-- `init --tenant KEY --reset`: its provisioning queued again, whatever state it was in.
INSERT INTO pgfleet.operations (kind, tenant_id, idempotency_key) VALUES ('provision', $1, $2)
ON CONFLICT (idempotency_key) DO UPDATE SET state = 'queued', attempts = 0, not_before = now(), lease_owner = NULL, finished_at = NULL
