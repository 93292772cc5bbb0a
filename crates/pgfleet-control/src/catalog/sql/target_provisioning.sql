-- The target new tenants are provisioned to: the newest validated one, the current one first.
SELECT version FROM pgfleet.targets WHERE validated OR is_current
ORDER BY validated DESC, is_current DESC, version DESC LIMIT 1
