//! pgfleet's hot path: from a tenant key to a pooled connection running as the tenant's own role
//! (logged in as it, or — trusted callers of schema tenants — a shared connection of the fleet's
//! pool role switched to it on checkout, see [`SharedConn`]), with no catalog query and no round
//! trip waited for on the way once warm.
//!
//! - **Routing snapshot**: placements (server, database, schema, credentials) come from a
//!   [`Directory`] (the control plane) on first use and are kept per key. Changes announced by the
//!   directory (a tenant dropped, moved, its password rotated) drop the entry and its idle
//!   connections; entries older than the TTL are re-read in the background while the old one keeps
//!   serving; a login refused for a bad password or a missing database re-reads the entry at once.
//! - **Pools under a budget**: connections are opened lazily per tenant and kept idle for reuse.
//!   Every open connection of a server holds one permit of that server's budget, shared by all its
//!   tenants; a tenant that needs a connection when the budget is spent closes the longest-idle
//!   connection of another tenant, or waits (up to the acquire timeout) for one to come back. A
//!   per-tenant cap keeps one hot tenant from holding the whole budget. Idle connections close
//!   after the idle timeout.
//! - **Fail fast**: a server that refused a connection is considered down for a moment; its
//!   tenants get [`RouterError::is_unavailable`] at once instead of a timeout each.
//! - **Heal and retry** ([`Router::with_tenant`]): an `undefined_table`, `undefined_column` or
//!   `invalid_schema_name` error asks the directory to repair the tenant (one repair at a time per
//!   tenant in the process; the directory serializes processes), then runs the closure once more.
//!   A repair that finds nothing to do returns the original error, and the tenant is not repaired
//!   again for a cooldown, so a wrong query cannot start a repair storm.
//! - **Connection kinds** ([`Backend`]): [`Router::client`] hands out tokio-postgres clients
//!   ([`PgBackend`]); [`Router::connection`] and [`Router::with_connection`] hand out connections
//!   of any other kind (for example one that speaks the wire protocol itself), under the same
//!   budget, cap, eviction, reaping and healing, shared with the clients of the same servers.
//!
//! One concept per module: `options` ([`RouterOptions`]), `directory` ([`Directory`],
//! [`DirectoryError`]), `error` ([`RouterError`]), `pool` (a server's budget and idle
//! connections), `backend` ([`Backend`], [`ConnectError`]), `connect` ([`PgBackend`]), `snapshot`
//! (the routing snapshot), `client` ([`Pooled`], [`TenantClient`]), `router` ([`Router`]: acquire),
//! `heal` (heal and retry), `housekeeping` (reaper, change listener), `wire` ([`wire::WireBackend`]:
//! a connection kind that speaks the protocol itself, with PostgreSQL's text output, and
//! [`Router::run`], the seam the SQL front doors use), `cache` (the result cache,
//! [`cache::Cache`]).

#![deny(missing_docs)]

mod backend;
pub mod cache;
mod client;
mod connect;
pub mod directory;
mod error;
mod heal;
mod housekeeping;
mod options;
mod pool;
mod retry;
mod router;
mod shared;
mod snapshot;
pub mod wire;

pub use backend::{Backend, ConnectError};
pub use client::{Pooled, TenantClient};
pub use connect::PgBackend;
pub use directory::{BoxError, Directory, DirectoryError, Placement, Repair, SharedLogin};
pub use error::RouterError;
pub use heal::{is_healable, is_healable_sqlstate};
pub use options::{RouterOptions, UnknownPolicy};
pub use pool::BudgetPermit;
pub use retry::{MAX_RETRIES, TransactionFuture};
pub use router::Router;
pub use shared::{SharedConn, SwitchCheck};
