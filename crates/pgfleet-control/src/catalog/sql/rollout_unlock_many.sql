SELECT pg_advisory_unlock($1::int4, (id % 2147483647)::int4) FROM unnest($2::int8[]) AS id
