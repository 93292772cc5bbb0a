-- Tenants by state and health, for the dashboard's overview: one scan of the table.
SELECT state, health, count(*) FROM pgfleet.tenants GROUP BY state, health
