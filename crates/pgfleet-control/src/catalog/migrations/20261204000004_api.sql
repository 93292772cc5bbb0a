-- The management API and the dashboard: sign-in sessions, the rollout a failure belongs to, and
-- indexes for paging events by tenant and kind.

-- Dashboard sessions: only a SHA-256 digest of the session secret is kept, so a read of the catalog
-- cannot sign anyone in. A session lives while its token is live and it was used within the idle
-- expiry; several `pgfleet serve` processes share them.
CREATE TABLE pgfleet.sessions (
    digest      bytea PRIMARY KEY CHECK (length(digest) = 32),
    token_name  text NOT NULL REFERENCES pgfleet.tokens ON DELETE CASCADE,
    created_at  timestamptz NOT NULL DEFAULT now(),
    last_seen   timestamptz NOT NULL DEFAULT now()
);
CREATE INDEX sessions_last_seen ON pgfleet.sessions (last_seen);

-- One rollout runs at a time (a second `migrate --all`, from the CLI, the API or the dashboard,
-- is refused while one runs; a run whose process died is marked abandoned before a new one starts).
CREATE UNIQUE INDEX rollouts_one_running ON pgfleet.rollouts ((true)) WHERE state = 'running';

-- What a rollout was asked (canary, continue_on_error, ...), for the API and the dashboard.
ALTER TABLE pgfleet.rollouts ADD COLUMN options jsonb NOT NULL DEFAULT '{}';

CREATE INDEX events_key_id ON pgfleet.events (tenant_key, id);
CREATE INDEX events_kind_id ON pgfleet.events (kind, id);
CREATE INDEX events_rollout ON pgfleet.events ((detail->>'rollout'), id) WHERE kind LIKE 'tenant.migrat%';
CREATE INDEX tenants_state_key ON pgfleet.tenants (state, key);
-- The overview's "needs attention" list: tenants that failed, failed a migration or are unhealthy,
-- most recent first, without scanning every tenant.
CREATE INDEX tenants_attention ON pgfleet.tenants ((coalesce(health_checked_at, created_at)) DESC)
    WHERE state = 'failed' OR migrate_error IS NOT NULL OR health IN ('degraded', 'unreachable');
