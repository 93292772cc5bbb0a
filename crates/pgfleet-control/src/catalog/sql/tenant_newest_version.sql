SELECT max(schema_version) FROM pgfleet.tenants
