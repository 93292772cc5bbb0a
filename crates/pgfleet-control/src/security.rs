//! Tenant containment: what a tenant's role must never hold, how pgfleet finds it, and how it
//! takes it away.
//!
//! Tenant SQL is untrusted. A tenant's role runs DML on its own objects and nothing else; in
//! particular it can attach **no code** that another session would run: no `TRIGGER` privilege
//! (a trigger fires in the session of whoever writes the table), no `TEMPORARY` (functions in
//! `pg_temp` a trigger could call), no `CREATE` in any schema or database (objects that another
//! session's `search_path` could resolve), no ownership of anything, no membership of other roles
//! (but the group role of schema tenants), no role settings, and none of the server-level
//! attributes (`SUPERUSER`, `CREATEROLE`, `CREATEDB`, `REPLICATION`, `BYPASSRLS`). On top of that,
//! the work pgfleet does on tenant objects runs as the fleet's owner role (see [`crate::owner`]),
//! never as the server's admin, so a vector nobody thought of still cannot reach the server.
//!
//! - [`Control::security_findings`] reports every departure (`check`, `check-user`): critical
//!   ones (server-level attributes, memberships, triggers that are not in the target, ownership,
//!   `TRIGGER`/`TEMPORARY`/`CREATE`) and the objects not handed to the owner role yet.
//! - [`Control::secure`] closes them in one transaction on the tenant's database, as the admin
//!   (it runs no tenant-reachable code: it locks, revokes, drops triggers and changes owners), and
//!   records each change as a `tenant.correction` event. `check --fix`, healing and `migrate
//!   --all` run it before they touch a tenant that needs it; fleets provisioned by older pgfleet
//!   versions (which granted `TRIGGER` and `TEMPORARY`) are repaired that way.
//!
//! Triggers a tenant attached while it could are found by comparing every trigger on its
//! relations with the target model of its version (name and definition); they are dropped under a
//! `SHARE ROW EXCLUSIVE` lock on its tables taken before `TRIGGER` is revoked, so a `CREATE TRIGGER`
//! racing with the repair either finishes first (and is seen and dropped) or waits for the lock and
//! then finds the privilege gone.

use serde::Serialize;

mod held;
mod secure;

/// One departure from what a tenant's role may hold.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct SecurityFinding {
    /// Critical: the tenant can (or could) run code with more privilege than its own role, or
    /// has such privilege already.
    pub critical: bool,
    /// What was found.
    pub what: String,
    /// What repairs it.
    pub fix: String,
}

impl SecurityFinding {
    fn critical(what: impl Into<String>) -> Self {
        Self {
            critical: true,
            what: what.into(),
            fix: "`pgfleet check --tenant KEY --fix` (or the next `migrate --all`) takes it away"
                .into(),
        }
    }
}
