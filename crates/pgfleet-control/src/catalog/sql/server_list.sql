SELECT s.name, s.display_url, s.capacity, s.weight, s.state, s.version, s.has_vector,
       (SELECT count(*) FROM pgfleet.tenants t WHERE t.server = s.name) AS tenants
FROM pgfleet.servers s ORDER BY s.name
