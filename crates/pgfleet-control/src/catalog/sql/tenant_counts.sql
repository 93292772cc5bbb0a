-- Tenants by (state, server, health), for the gauges of `pgfleet serve`.
SELECT state, coalesce(server, ''), health, count(*) FROM pgfleet.tenants GROUP BY 1, 2, 3
