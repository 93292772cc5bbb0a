//! Fleet operations: bring every tenant to the target (`migrate --all`) and check the whole fleet
//! for drift (`check --all`), concurrently within bounds.
//!
//! `migrate --all` records the migrations directory as the target (as `init` does), then:
//!
//! - **Up-to-date tenants cost nothing**: the catalog knows each tenant's version, and a tenant
//!   already at the target is not connected to at all.
//! - The others are migrated with pgfleet's migrator on a connection of their own at a time (at most
//!   `concurrency` overall and `per_server` per server), under the migrator's per-database (or
//!   per-schema) lock, each migration in its own transaction with its history row. Schema tenants
//!   of one server share a few connections to the shared database, one tenant after another.
//! - After a tenant's migrations the tenant's role is granted DML on what they created.
//! - **Isolated and resumable**: a failing tenant is recorded in the catalog (`migrate_error`: file,
//!   statement and PostgreSQL's message; a `tenant.migrate_failed` event) and keeps its version;
//!   the run stops starting new tenants unless `continue_on_error`. Versions reach the catalog in
//!   batches; a run killed before a batch was written leaves tenants migrated whose catalog row is
//!   behind, and the next run finds them up to date in their history (no statement runs twice) and
//!   records them.
//! - **Canary**: the first N (or N %) tenants are migrated first; if any fails, the rest are not
//!   started.
//! - Every run is recorded in `pgfleet.rollouts` (target, owner, counts, state).
//!
//! Modules: `rollout` (the run and its report), `runner` (bounds, chunks, one tenant), `batch` (a
//! chunk of schema tenants in a few round trips), `recorder` (outcomes to the catalog in batches),
//! `check` (`check --all`).

mod batch;
mod check;
mod recorder;
mod report;
mod rollout;
mod runner;

pub use check::{FleetCheck, TenantCheck};
pub use report::{
    Canary, FleetMigration, FleetOptions, FleetProgress, Outcome, ProgressFn, TenantMigration,
};
