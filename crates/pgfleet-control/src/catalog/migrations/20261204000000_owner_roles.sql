-- The fleet's owner role on each server: a login without any server-level right (no superuser, no
-- role or database creation) that owns the tenants' objects and runs their migrations and repairs,
-- so that code a tenant could attach to its tables never runs as the server's admin. Its password
-- is sealed like a tenant's (associated data `server-owner:<server>`).
CREATE TABLE pgfleet.server_owners (
    server          text PRIMARY KEY REFERENCES pgfleet.servers ON DELETE CASCADE,
    role_name       text NOT NULL,
    password_sealed bytea NOT NULL,
    password_key    bytea NOT NULL,
    key_id          text NOT NULL,
    created_at      timestamptz NOT NULL DEFAULT now()
);
