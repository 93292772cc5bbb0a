//! How the router pools and routes: [`RouterOptions`] and [`UnknownPolicy`].

use std::time::Duration;

/// What to do with a key no ready tenant has.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnknownPolicy {
    /// Fail with [`RouterError::TenantNotFound`](crate::RouterError::TenantNotFound) (the default).
    Reject,
    /// Provision the tenant and wait for it to be ready, at most this long.
    Provision(Duration),
}

/// How the router pools and routes.
#[derive(Clone)]
pub struct RouterOptions {
    /// Open connections per server, all its tenants and connection kinds
    /// ([`Backend`](crate::Backend)s) together.
    pub budget_per_server: usize,
    /// Connections one tenant may have in use at once, of every kind together.
    pub per_tenant: usize,
    /// Connections being opened to one server at once. Opening is the server's slowest work (a
    /// process, a login); beyond its cores it goes no faster, and each opening holds a permit of
    /// the budget that idle connections of hot tenants could keep: others wait for their turn
    /// (or take an idle connection that comes back meanwhile).
    pub opens_per_server: usize,
    /// How long [`Router::client`](crate::Router::client) waits for a connection.
    pub acquire_timeout: Duration,
    /// Connect timeout of a new connection.
    pub connect_timeout: Duration,
    /// Idle connections close after this.
    pub idle_timeout: Duration,
    /// Placements are re-read in the background after this.
    pub ttl: Duration,
    /// Keys without a ready tenant.
    pub unknown: UnknownPolicy,
    /// A database used for keys without a ready tenant, only when set: each use is logged at
    /// warn with the key, counted (`pgfleet_router_fallback_total`) and visible on the client.
    pub fallback: Option<tokio_postgres::Config>,
    /// After a repair that found nothing to do, the tenant is not repaired again for this long.
    pub repair_cooldown: Duration,
    /// After a server refused a connection, its tenants fail fast for this long.
    pub down_for: Duration,
    /// Retries of transient failures one tenant may spend at once (see
    /// [`Router::transaction`](crate::Router::transaction)); beyond it, the failure is returned.
    pub retry_burst: u32,
    /// Retries a tenant earns back per second, up to [`RouterOptions::retry_burst`].
    pub retries_per_second: f64,
    /// Trusted callers ([`Router::client`](crate::Router::client),
    /// [`Router::with_tenant`](crate::Router::with_tenant)) of schema-mode tenants share
    /// connections of the fleet's pool role, switched to the tenant on each checkout, so that many
    /// active tenants need few connections. On by default; `PGFLEET_SHARED_CONNECTIONS=off` in the
    /// environment turns the default off. End users (other connection kinds) never share.
    pub shared_connections: bool,
    /// The result cache ([`Router::run`](crate::Router::run) and
    /// [`Router::query_cached`](crate::Router::query_cached); `/sql` runs through it).
    pub cache: crate::cache::CacheOptions,
}

impl Default for RouterOptions {
    fn default() -> Self {
        Self {
            budget_per_server: 20,
            per_tenant: 5,
            opens_per_server: 8,
            acquire_timeout: Duration::from_secs(5),
            connect_timeout: Duration::from_secs(5),
            idle_timeout: Duration::from_secs(60),
            ttl: Duration::from_secs(60),
            unknown: UnknownPolicy::Reject,
            fallback: None,
            repair_cooldown: Duration::from_secs(30),
            down_for: Duration::from_secs(1),
            retry_burst: 10,
            retries_per_second: 2.0,
            shared_connections: std::env::var("PGFLEET_SHARED_CONNECTIONS")
                .map(|v| !matches!(v.trim(), "off" | "0" | "false" | "no"))
                .unwrap_or(true),
            cache: crate::cache::CacheOptions::default(),
        }
    }
}

impl std::fmt::Debug for RouterOptions {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RouterOptions")
            .field("budget_per_server", &self.budget_per_server)
            .field("per_tenant", &self.per_tenant)
            .field("opens_per_server", &self.opens_per_server)
            .field("acquire_timeout", &self.acquire_timeout)
            .field("idle_timeout", &self.idle_timeout)
            .field("ttl", &self.ttl)
            .field("unknown", &self.unknown)
            .field("fallback", &self.fallback.is_some())
            .field("shared_connections", &self.shared_connections)
            .field("retry_burst", &self.retry_burst)
            .field("retries_per_second", &self.retries_per_second)
            .field("cache", &self.cache)
            .finish_non_exhaustive()
    }
}
