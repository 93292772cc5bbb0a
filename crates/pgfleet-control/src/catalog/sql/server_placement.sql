-- Every server with its tenants, for placement (under the placement lock).
SELECT s.name, s.state, s.capacity, s.weight,
       (SELECT count(*) FROM pgfleet.tenants t WHERE t.server = s.name)::int AS used
FROM pgfleet.servers s ORDER BY s.name
