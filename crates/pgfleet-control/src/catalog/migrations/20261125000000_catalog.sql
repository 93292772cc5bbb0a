-- pgfleet's catalog, version 1. Applied by `pgfleet init` with pgfleet's own migrator.
CREATE SCHEMA pgfleet;
REVOKE ALL ON SCHEMA pgfleet FROM PUBLIC;

-- PostgreSQL servers that hold tenants. The admin URL (with its password) is sealed like tenant
-- passwords: AES-256-GCM under a per-row data key wrapped by the master key.
CREATE TABLE pgfleet.servers (
    name          text PRIMARY KEY CHECK (name ~ '^[a-z0-9][a-z0-9_-]{0,62}$'),
    url_sealed    bytea NOT NULL,
    url_key       bytea NOT NULL,
    key_id        text NOT NULL,
    display_url   text NOT NULL,          -- the URL without its password
    capacity      integer NOT NULL CHECK (capacity >= 0),
    weight        integer NOT NULL CHECK (weight > 0),
    state         text NOT NULL DEFAULT 'active' CHECK (state IN ('active', 'draining')),
    version       text NOT NULL,
    has_vector    boolean NOT NULL,
    created_at    timestamptz NOT NULL DEFAULT now()
);

-- The fleet's target: the migrations directory, stored so no other process needs the files.
CREATE TABLE pgfleet.targets (
    version     text PRIMARY KEY,          -- the newest migration's version
    dir_hash    text NOT NULL,             -- the `dir` line of pgfleet.sum
    files       jsonb NOT NULL,            -- [{"file_name", "sql", "checksum"}] in version order
    is_current  boolean NOT NULL DEFAULT false,
    created_at  timestamptz NOT NULL DEFAULT now()
);
CREATE UNIQUE INDEX targets_one_current ON pgfleet.targets (is_current) WHERE is_current;

-- Tenants. Internal names derive from the generated id, never from the key.
CREATE TABLE pgfleet.tenants (
    id               text PRIMARY KEY CHECK (id ~ '^t[0-9a-f]{16}$'),
    key              text NOT NULL UNIQUE CHECK (octet_length(key) BETWEEN 1 AND 256),
    mode             text NOT NULL CHECK (mode IN ('database', 'schema')),
    requested_server text,
    server           text REFERENCES pgfleet.servers,
    database_name    text NOT NULL,
    schema_name      text NOT NULL,
    role_name        text NOT NULL,
    password_sealed  bytea,
    password_key     bytea,
    key_id           text,
    state            text NOT NULL DEFAULT 'provisioning'
                     CHECK (state IN ('provisioning', 'ready', 'failed', 'dropping')),
    step             text NOT NULL DEFAULT 'place',
    schema_version   text,
    last_error       text,
    created_at       timestamptz NOT NULL DEFAULT now(),
    updated_at       timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX tenants_server ON pgfleet.tenants (server);

-- Work for the workers: claimed with FOR UPDATE SKIP LOCKED and a lease.
CREATE TABLE pgfleet.operations (
    id              bigserial PRIMARY KEY,
    kind            text NOT NULL,
    tenant_id       text REFERENCES pgfleet.tenants ON DELETE CASCADE,
    idempotency_key text NOT NULL UNIQUE,
    state           text NOT NULL DEFAULT 'queued' CHECK (state IN ('queued', 'running', 'done', 'failed')),
    attempts        integer NOT NULL DEFAULT 0,
    not_before      timestamptz NOT NULL DEFAULT now(),
    lease_owner     text,
    lease_until     timestamptz,
    last_error      text,
    created_at      timestamptz NOT NULL DEFAULT now(),
    finished_at     timestamptz
);
CREATE INDEX operations_runnable ON pgfleet.operations (not_before) WHERE state IN ('queued', 'running');

-- Audit trail and corrections: who did what, when, with what detail. Kept after a tenant is dropped.
CREATE TABLE pgfleet.events (
    id          bigserial PRIMARY KEY,
    at          timestamptz NOT NULL DEFAULT now(),
    tenant_id   text,
    tenant_key  text,
    kind        text NOT NULL,
    actor       text NOT NULL DEFAULT current_user,
    detail      jsonb NOT NULL DEFAULT '{}'
);
CREATE INDEX events_tenant ON pgfleet.events (tenant_id, at);
