-- Test-only additions to the chat example's schema (examples/chat/schema.sql): an enum, a domain
-- over integer with a CHECK, and a table using both, so that enums and domains can be
-- round-tripped through POST /sql. The Rust harness (crates/pgfleet-server/tests/sql.rs)
-- provisions the test tenants with the chat schema followed by this file.
CREATE TYPE mood AS ENUM ('happy', 'sad');
CREATE DOMAIN positive_int AS integer CHECK (VALUE > 0);

CREATE TABLE type_samples (
    id  bigserial PRIMARY KEY,
    m   mood,
    p   positive_int
);
