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

-- A table written only by a trigger: the result cache's tests check that a write firing it
-- drops the cached reads of what the trigger wrote.
CREATE TABLE sample_audit (
    id  bigserial PRIMARY KEY,
    p   integer
);
CREATE FUNCTION audit_sample() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    INSERT INTO sample_audit (p) VALUES (NEW.p);
    RETURN NEW;
END
$$;
CREATE TRIGGER type_samples_audit AFTER INSERT ON type_samples
    FOR EACH ROW EXECUTE FUNCTION audit_sample();
