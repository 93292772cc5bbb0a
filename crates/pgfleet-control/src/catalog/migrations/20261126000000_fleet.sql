-- Fleet operations: each tenant's last failed fleet migration and its health, and a record of each
-- `migrate --all` run.
ALTER TABLE pgfleet.tenants
    ADD COLUMN migrate_error      text,
    ADD COLUMN health             text NOT NULL DEFAULT 'unknown'
                                  CHECK (health IN ('unknown', 'healthy', 'degraded', 'unreachable')),
    ADD COLUMN health_error       text,
    ADD COLUMN health_latency_ms  double precision,
    ADD COLUMN health_checked_at  timestamptz;
CREATE INDEX tenants_health_due ON pgfleet.tenants (health_checked_at NULLS FIRST) WHERE state = 'ready';

CREATE TABLE pgfleet.rollouts (
    id           bigserial PRIMARY KEY,
    target       text NOT NULL,
    owner        text NOT NULL,
    started_at   timestamptz NOT NULL DEFAULT now(),
    finished_at  timestamptz,
    state        text NOT NULL DEFAULT 'running' CHECK (state IN ('running', 'done', 'failed')),
    total        integer NOT NULL DEFAULT 0,
    migrated     integer NOT NULL DEFAULT 0,
    up_to_date   integer NOT NULL DEFAULT 0,
    failed       integer NOT NULL DEFAULT 0,
    not_run      integer NOT NULL DEFAULT 0
);
