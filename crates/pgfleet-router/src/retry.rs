//! Safe retries of transient failures, and [`Router::transaction`].
//!
//! A failure is retried only when nothing of the work can have been applied:
//!
//! - opening a connection that the server refused for now (`57P03` starting up or shutting down,
//!   `53300` too many connections): nothing was sent ([`ConnectError::Busy`]);
//! - a transaction ([`Router::transaction`]) whose connection could not be opened (the server
//!   is down or restarting): nothing was sent;
//! - work pgfleet itself runs as one transaction ([`Router::transaction`], a `/sql` request) that
//!   failed before its `COMMIT` was sent, or whose `COMMIT` the server answered with a
//!   serialization failure (`40001`) or a deadlock (`40P01`): the server rolled it back. Transient
//!   causes are those two, a connection that broke (the backend was terminated, `57P01`; the
//!   server shut down or crashed, `57P02`, `57P03`; the socket closed), never an error of the SQL;
//! - never a `COMMIT` sent without an answer: its outcome is unknown
//!   ([`RouterError::OutcomeUnknown`], SQLSTATE `08007`, transaction resolution unknown).
//!
//! [`Router::with_tenant`] is not a transaction (its closure may have written before failing),
//! so it keeps only its repair-and-retry.
//!
//! Retries wait 100 ms, 200 ms, 400 ms … (at most [`MAX_RETRIES`]; half of each wait is random,
//! so that tenants that failed together do not come back together) and draw on a budget per
//! tenant ([`RetryBudget`]: a burst of 10, then 2 per second), so that retries cannot multiply an
//! outage. Each retry is logged (`tracing`, at info) and counted:
//! `pgfleet_router_retries_total{reason}`; retries refused by the budget:
//! `pgfleet_router_retries_refused_total`.
//!
//! [`ConnectError::Busy`]: crate::ConnectError::Busy

use std::future::Future;
use std::hash::{BuildHasher, Hasher};
use std::pin::Pin;
use std::sync::Mutex;
use std::sync::atomic::Ordering;
use std::time::{Duration, Instant, SystemTime};

use crate::client::TenantClient;
use crate::connect::PgBackend;
use crate::directory::Directory;
use crate::error::{RouterError, describe};
use crate::heal::{Healing, is_healable};
use crate::router::Router;
use crate::snapshot::Entry;

/// Retries of one call at most.
pub const MAX_RETRIES: u32 = 5;
/// The first retry's wait; each next one doubles it.
const FIRST_WAIT: Duration = Duration::from_millis(100);

/// Why a retry happens: the `reason` label of `pgfleet_router_retries_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Reason {
    /// `40001`.
    SerializationFailure,
    /// `40P01`.
    Deadlock,
    /// The connection broke (terminated backend, server shut down or restarted, socket closed).
    ConnectionBroken,
    /// The server refused a new connection for now (`57P03`, `53300`).
    ServerBusy,
    /// The server refused or did not answer a new connection (restarting, or down).
    ServerUnavailable,
}

impl Reason {
    pub(crate) fn as_str(self) -> &'static str {
        match self {
            Self::SerializationFailure => "serialization_failure",
            Self::Deadlock => "deadlock",
            Self::ConnectionBroken => "connection_broken",
            Self::ServerBusy => "server_busy",
            Self::ServerUnavailable => "server_unavailable",
        }
    }
}

/// Whether a statement's error inside a transaction that did not commit is transient, and why.
pub(crate) fn transient(e: &tokio_postgres::Error) -> Option<Reason> {
    match e.code().map(tokio_postgres::error::SqlState::code) {
        Some("40001") => Some(Reason::SerializationFailure),
        Some("40P01") => Some(Reason::Deadlock),
        Some("57P01" | "57P02" | "57P03") => Some(Reason::ConnectionBroken),
        Some(c) if c.starts_with("08") => Some(Reason::ConnectionBroken),
        Some(_) => None,
        None if e.is_closed()
            || std::error::Error::source(e).is_some_and(|s| s.is::<std::io::Error>()) =>
        {
            Some(Reason::ConnectionBroken)
        }
        None => None,
    }
}

/// A tenant's retry budget: a token bucket (a burst of
/// [`RouterOptions::retry_burst`](crate::RouterOptions::retry_burst), refilled at
/// [`RouterOptions::retries_per_second`](crate::RouterOptions::retries_per_second)).
#[derive(Debug)]
pub(crate) struct RetryBudget {
    tokens: Mutex<(f64, Instant)>,
    burst: f64,
    per_second: f64,
}

impl RetryBudget {
    pub(crate) fn new(burst: u32, per_second: f64) -> Self {
        Self {
            tokens: Mutex::new((f64::from(burst), Instant::now())),
            burst: f64::from(burst),
            per_second: per_second.max(0.0),
        }
    }

    /// Takes one retry; false when the budget is spent.
    fn take(&self) -> bool {
        let mut b = self.tokens.lock().unwrap_or_else(|e| e.into_inner());
        let now = Instant::now();
        let earned = now.saturating_duration_since(b.1).as_secs_f64() * self.per_second;
        *b = ((b.0 + earned).min(self.burst), now);
        if b.0 >= 1.0 {
            b.0 -= 1.0;
            true
        } else {
            false
        }
    }
}

/// The wait before retry `n` (1-based): [`FIRST_WAIT`] doubled `n - 1` times, its second half
/// random.
pub(crate) fn backoff(n: u32) -> Duration {
    let full = FIRST_WAIT * 2u32.saturating_pow(n.saturating_sub(1).min(10));
    let random = std::collections::hash_map::RandomState::new()
        .build_hasher()
        .finish();
    full / 2 + full.mul_f64((random % 1_000_000) as f64 / 2_000_000.0)
}

/// Retry `n` of tenant `entry` for `reason` after `cause`: logged, counted and waited for, when
/// `n` is within [`MAX_RETRIES`], the wait ends before `deadline` (if any) and the tenant's budget
/// allows; false (and nothing waited) when not.
pub(crate) async fn retry(
    entry: &Entry,
    n: u32,
    reason: Reason,
    cause: &str,
    deadline: Option<tokio::time::Instant>,
) -> bool {
    if n > MAX_RETRIES {
        return false;
    }
    let wait = backoff(n);
    if deadline.is_some_and(|d| tokio::time::Instant::now() + wait >= d) {
        return false;
    }
    if !entry.retry_budget.take() {
        metrics::counter!("pgfleet_router_retries_refused_total").increment(1);
        tracing::warn!(
            tenant = %entry.placement.key,
            reason = reason.as_str(),
            "not retrying (the tenant's retry budget is spent): {cause}"
        );
        return false;
    }
    metrics::counter!("pgfleet_router_retries_total", "reason" => reason.as_str()).increment(1);
    tracing::info!(
        tenant = %entry.placement.key,
        reason = reason.as_str(),
        attempt = n,
        wait_ms = wait.as_millis() as u64,
        "retrying: {cause}"
    );
    tokio::time::sleep(wait).await;
    true
}

/// The work of [`Router::transaction`]: a closure that runs statements on the client it is lent.
pub type TransactionFuture<'c, T> =
    Pin<Box<dyn Future<Output = Result<T, tokio_postgres::Error>> + Send + 'c>>;

/// How one attempt of a transaction ended, when it did not commit.
enum Attempt {
    /// It did not commit: the transaction may still be open (to roll back), or the server ended
    /// it answering `COMMIT` (`Ended`).
    Failed(tokio_postgres::Error),
    /// `COMMIT` failed with a serialization failure or a deadlock: rolled back by the server.
    Ended(tokio_postgres::Error),
    /// Its `COMMIT` was sent and no answer came back.
    Unknown(tokio_postgres::Error),
}

impl<D: Directory> Router<D> {
    /// Runs `f` in one transaction on a connection to tenant `key` (`BEGIN`, `f`, `COMMIT`) and
    /// returns what `f` returned once committed. Runs it again — `f` must be safe to run more than
    /// once — when the transaction did not commit for a transient reason (a serialization
    /// failure, a deadlock, a connection that broke before `COMMIT` was sent: see the module
    /// documentation), up to [`MAX_RETRIES`] times with a growing wait, within the tenant's retry
    /// budget; and once after a repair when the tenant's schema missed a table, column or schema,
    /// as [`Router::with_tenant`] does. An error `f` swallows inside the transaction makes
    /// PostgreSQL answer `COMMIT` with a rollback: return it instead.
    ///
    /// ```no_run
    /// # async fn f(router: pgfleet_router::Router<impl pgfleet_router::Directory>) -> Result<(), pgfleet_router::RouterError> {
    /// let moved: u64 = router
    ///     .transaction("alice", |c| {
    ///         Box::pin(async move {
    ///             c.execute("UPDATE accounts SET balance = balance - 10 WHERE id = 1", &[]).await?;
    ///             c.execute("UPDATE accounts SET balance = balance + 10 WHERE id = 2", &[]).await
    ///         })
    ///     })
    ///     .await?;
    /// # Ok(()) }
    /// ```
    ///
    /// # Errors
    /// As [`Router::with_tenant`]; [`RouterError::OutcomeUnknown`] when the connection broke after
    /// `COMMIT` was sent (it may or may not have committed; never retried).
    pub async fn transaction<T, F>(&self, key: &str, mut f: F) -> Result<T, RouterError>
    where
        F: for<'c> FnMut(&'c TenantClient) -> TransactionFuture<'c, T>,
    {
        let (mut retries, mut healed, mut stale_retried) = (0, false, false);
        loop {
            let entry = self.snapshot.entry(key).await?;
            let generation = entry.repairs.load(Ordering::Acquire);
            let seen = SystemTime::now();
            // A server that refused or did not answer (restarting): nothing was sent, so again
            // after a wait; the server's down mark keeps the attempts in between cheap.
            let client = match self.client(key).await {
                Ok(c) => c,
                Err(e @ RouterError::Unavailable { .. }) => {
                    let why = describe(&e);
                    if retry(&entry, retries + 1, Reason::ServerUnavailable, &why, None).await {
                        retries += 1;
                        continue;
                    }
                    return Err(e);
                }
                Err(e) => return Err(e),
            };
            let (error, open) = match attempt(&client, &mut f).await {
                Ok(v) => return Ok(v),
                Err(Attempt::Unknown(e)) => {
                    client.discard();
                    metrics::counter!("pgfleet_router_outcome_unknown_total").increment(1);
                    return Err(RouterError::OutcomeUnknown {
                        key: key.into(),
                        source: Box::new(e),
                    });
                }
                Err(Attempt::Failed(e)) => (e, true),
                Err(Attempt::Ended(e)) => (e, false),
            };
            // The work of a shared connection that did not switch ran as nobody: nothing ran.
            if let Err(e) = client.verify().await {
                client.discard();
                match e {
                    // The connection's last user left a failed transaction: once more, on another.
                    RouterError::RoleSwitch {
                        stale_transaction: true,
                        ..
                    } if !stale_retried => {
                        stale_retried = true;
                        continue;
                    }
                    RouterError::RoleSwitch { .. } => {
                        // Log in as the tenant from now on (in this process).
                        entry.unshared.store(true, Ordering::Relaxed);
                        return Err(e);
                    }
                    e => return Err(e),
                }
            }
            let reason = transient(&error);
            // Back to the pool rolled back, or closed when it broke or cannot roll back.
            let broken = reason == Some(Reason::ConnectionBroken) || client.is_closed();
            if broken || (open && client.batch_execute("ROLLBACK").await.is_err()) {
                client.discard();
            } else {
                drop(client);
            }
            if is_healable(&error) && !healed && !entry.fallback {
                let why = describe(&error);
                match self.heal(&entry, generation, &why, seen).await {
                    Healing::Retry => {
                        healed = true;
                        continue;
                    }
                    Healing::NotHealed => return Err(query_error(key, error, false)),
                    Healing::Failed(repair) => {
                        return Err(RouterError::RepairFailed {
                            key: key.into(),
                            sqlstate: error.code().cloned(),
                            error: Box::new(error),
                            repair,
                        });
                    }
                }
            }
            match reason {
                Some(r) if retry(&entry, retries + 1, r, &describe(&error), None).await => {
                    retries += 1;
                }
                _ => return Err(query_error(key, error, healed)),
            }
        }
    }
}

impl<D: Directory> Router<D> {
    /// Whether work that pgfleet ran as one transaction for tenant `key` (a `/sql` request: one
    /// statement, or a batch in one transaction) and that failed with `error` may run again, as
    /// its retry number `n`: when the server rolled it back for a serialization failure or a
    /// deadlock, or had closed the session before the request reached it
    /// ([`WireError::Closed`](crate::wire::WireError::Closed): a terminated backend, a server that
    /// shut down), within [`MAX_RETRIES`] and the tenant's retry budget. Waits the retry's backoff
    /// first, and counts it.
    pub async fn retry_rolled_back(&self, key: &str, n: u32, error: &RouterError) -> bool {
        let closed = matches!(error, RouterError::Query { source, .. }
            if matches!(source.downcast_ref::<crate::wire::WireError>(), Some(crate::wire::WireError::Closed(_))));
        let reason = match error.sqlstate() {
            _ if closed => Reason::ConnectionBroken,
            Some("40001") => Reason::SerializationFailure,
            Some("40P01") => Reason::Deadlock,
            _ => return false,
        };
        match self.snapshot.entry(key).await {
            Ok(entry) => retry(&entry, n, reason, &describe(error), None).await,
            Err(_) => false,
        }
    }
}

/// One attempt: `BEGIN`, `f`, `COMMIT`.
async fn attempt<T, F>(client: &TenantClient, f: &mut F) -> Result<T, Attempt>
where
    F: for<'c> FnMut(&'c TenantClient) -> TransactionFuture<'c, T>,
{
    client
        .batch_execute("BEGIN")
        .await
        .map_err(Attempt::Failed)?;
    let value = f(client).await.map_err(Attempt::Failed)?;
    if client.is_closed() {
        // Not sent: tokio-postgres refuses a request on a closed connection.
        let e = client.batch_execute("COMMIT").await.err();
        return match e {
            Some(e) => Err(Attempt::Failed(e)),
            None => Ok(value),
        };
    }
    match client.batch_execute("COMMIT").await {
        Ok(()) => Ok(value),
        // The server answered: the transaction rolled back.
        Err(e)
            if e.as_db_error().is_some()
                && matches!(
                    transient(&e),
                    Some(Reason::SerializationFailure | Reason::Deadlock)
                ) =>
        {
            Err(Attempt::Ended(e))
        }
        Err(e) => Err(Attempt::Unknown(e)),
    }
}

fn query_error(key: &str, error: tokio_postgres::Error, healed: bool) -> RouterError {
    crate::heal::query_error::<PgBackend>(key, error, healed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn waits_double_with_their_second_half_random() {
        for n in 1..=5 {
            let full = FIRST_WAIT * 2u32.pow(n - 1);
            let w = backoff(n);
            assert!(w >= full / 2 && w <= full, "retry {n}: {w:?}");
        }
    }

    #[test]
    fn the_budget_allows_a_burst_then_refills() {
        let b = RetryBudget::new(10, 2.0);
        for _ in 0..10 {
            assert!(b.take());
        }
        assert!(!b.take(), "spent");
        *b.tokens.lock().unwrap() = (0.0, Instant::now() - Duration::from_secs(1));
        assert!(b.take() && b.take(), "two a second");
        assert!(!b.take());
    }
}
