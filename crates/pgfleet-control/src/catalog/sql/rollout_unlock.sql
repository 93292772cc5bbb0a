SELECT pg_advisory_unlock($1::int4, ($2::int8 % 2147483647)::int4)
