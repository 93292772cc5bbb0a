-- pgfleet's migration history of one database. Kept in its own schema, which introspection and
-- drift reports leave out. One row per (scope, version): scope is '' when migrations run on the whole
-- database, or the schema they run in (schema-per-tenant databases hold one history per tenant).
-- Created under a transaction-level advisory lock, so concurrent first runs do not race.
CREATE SCHEMA IF NOT EXISTS pgfleet_migrate;
REVOKE ALL ON SCHEMA pgfleet_migrate FROM PUBLIC;
CREATE TABLE IF NOT EXISTS pgfleet_migrate.history (
    scope            text        NOT NULL,
    version          text        NOT NULL,
    name             text        NOT NULL,
    checksum         text        NOT NULL,
    -- applied: ran to the end; partial: a no-transaction migration stopped after
    -- statements_done statements (the next run resumes); adopted: applied by another tool
    -- (sqlx, Drizzle, golang-migrate) before pgfleet took over.
    state            text        NOT NULL CHECK (state IN ('applied', 'partial', 'adopted')),
    statements_done  integer     NOT NULL DEFAULT 0,
    statements_total integer,
    -- sha256 of the text of the completed statements of a partial migration: a re-run may resume
    -- with an edited file as long as the statements that already ran are unchanged.
    done_hash        text,
    started_at       timestamptz NOT NULL DEFAULT now(),
    finished_at      timestamptz,
    duration_ms      bigint,
    applied_by       text        NOT NULL DEFAULT current_user,
    last_error       text,
    PRIMARY KEY (scope, version)
);
