//! The health checker: each ready tenant is checked periodically by logging in as its own role and
//! running `select 1`; the result (`healthy`, `degraded` when slow, `unreachable`), its latency and
//! when it was checked are stored on the tenant's catalog row.
//!
//! - **Shared by processes**: a round claims due tenants with `FOR UPDATE SKIP LOCKED` and stamps
//!   them checked at once, so several `pgfleet serve` processes split the fleet and each tenant is
//!   checked about once per interval.
//! - **A dead server does not cost thousands of timeouts**: the tenants of a round are grouped by
//!   server and the first check of each server is its probe. When that fails at the connection
//!   level (refused, timed out, closed: no PostgreSQL error), every tenant of that server in the
//!   round is marked `unreachable` with that error, without trying each. A tenant-level error (its
//!   role cannot log in, its database is gone) marks only that tenant.

use std::collections::HashMap;
use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::Semaphore;

use crate::secrets::Sealed;
use crate::tenant::{Health, Mode, Tenant};
use crate::{Control, ControlError};

/// How the health checker runs.
#[derive(Debug, Clone)]
pub struct HealthOptions {
    /// How often each tenant is checked.
    pub interval: Duration,
    /// Tenants checked at once.
    pub concurrency: usize,
    /// A check slower than this is `degraded`.
    pub degraded_after: Duration,
    /// Connect timeout of one check.
    pub timeout: Duration,
    /// Tenants claimed per round.
    pub batch: i64,
}

impl Default for HealthOptions {
    fn default() -> Self {
        Self {
            interval: Duration::from_secs(30),
            concurrency: 16,
            degraded_after: Duration::from_millis(500),
            timeout: Duration::from_secs(5),
            batch: 200,
        }
    }
}

/// What one round did.
#[derive(Debug, Clone, Default)]
pub struct HealthRound {
    /// Tenants checked, by result.
    pub checked: HashMap<Health, usize>,
    /// Tenants marked unreachable because their server's probe failed (not tried one by one).
    pub skipped_by_probe: usize,
}

impl HealthRound {
    /// Tenants checked in all.
    pub fn total(&self) -> usize {
        self.checked.values().sum()
    }
}

struct Checked {
    id: String,
    health: Health,
    latency_ms: Option<f64>,
    error: Option<String>,
}

impl Control {
    /// Claims the tenants due for a check (at most `opts.batch`) and checks them. Returns what it
    /// did; an empty round means nothing was due.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn health_round(&self, opts: &HealthOptions) -> Result<HealthRound, ControlError> {
        let claimed = crate::catalog::tenants::claim_health_checks(
            &*self.catalog(),
            opts.interval,
            opts.batch,
        )
        .await?;
        let mut by_server: HashMap<String, Vec<(Tenant, Option<Sealed>)>> = HashMap::new();
        for (t, sealed) in claimed {
            by_server
                .entry(t.server.clone().unwrap_or_default())
                .or_default()
                .push((t, sealed));
        }
        let gate = Arc::new(Semaphore::new(opts.concurrency.max(1)));
        let mut servers = tokio::task::JoinSet::new();
        for (server, tenants) in by_server {
            let (c, gate, opts) = (self.clone(), gate.clone(), opts.clone());
            servers
                .spawn(async move { c.check_server_tenants(&server, tenants, &gate, &opts).await });
        }
        let mut results = Vec::new();
        let mut round = HealthRound::default();
        while let Some(r) = servers.join_next().await {
            let (checked, skipped) = r.map_err(|e| ControlError::TaskFailed {
                what: "a health check task",
                reason: e.to_string(),
            })?;
            round.skipped_by_probe += skipped;
            results.extend(checked);
        }
        for r in &results {
            *round.checked.entry(r.health).or_default() += 1;
            metrics::counter!("pgfleet_health_checks_total", "result" => r.health.as_str())
                .increment(1);
            if let Some(ms) = r.latency_ms {
                metrics::histogram!("pgfleet_health_check_duration_seconds").record(ms / 1000.0);
            }
        }
        let rows: Vec<crate::catalog::tenants::HealthRow<'_>> = results
            .iter()
            .map(|r| crate::catalog::tenants::HealthRow {
                id: &r.id,
                health: r.health.as_str(),
                latency_ms: r.latency_ms,
                error: r.error.as_deref(),
            })
            .collect();
        crate::catalog::tenants::record_health(&*self.catalog(), &rows).await?;
        Ok(round)
    }

    /// Checks one server's tenants of a round: the first is the probe.
    async fn check_server_tenants(
        &self,
        server: &str,
        tenants: Vec<(Tenant, Option<Sealed>)>,
        gate: &Arc<Semaphore>,
        opts: &HealthOptions,
    ) -> (Vec<Checked>, usize) {
        let base = match self.server_admin_config(server).await {
            Ok(c) => c,
            Err(e) => {
                let error = format!("server {server:?}: {e}");
                let n = tenants.len();
                return (
                    tenants
                        .into_iter()
                        .map(|(t, _)| unreachable(&t, &error))
                        .collect(),
                    n,
                );
            }
        };
        let mut tenants = tenants.into_iter();
        let Some((first, sealed)) = tenants.next() else {
            return (Vec::new(), 0);
        };
        let mut out = Vec::new();
        let probe = {
            let _permit = gate.acquire().await.expect("never closed");
            self.check_one(&base, &first, sealed.as_ref(), opts).await
        };
        let (probe, connection_failed) = probe;
        let probe_error = probe.error.clone();
        out.push(probe);
        if connection_failed {
            let error = format!(
                "server {server:?} did not answer: {}",
                probe_error.unwrap_or_default()
            );
            let rest: Vec<Checked> = tenants.map(|(t, _)| unreachable(&t, &error)).collect();
            let skipped = rest.len();
            out.extend(rest);
            return (out, skipped);
        }
        let mut set = tokio::task::JoinSet::new();
        for (t, sealed) in tenants {
            let (c, gate, opts, base) = (self.clone(), gate.clone(), opts.clone(), base.clone());
            set.spawn(async move {
                let _permit = gate.acquire_owned().await.expect("never closed");
                c.check_one(&base, &t, sealed.as_ref(), &opts).await.0
            });
        }
        while let Some(r) = set.join_next().await {
            if let Ok(r) = r {
                out.push(r);
            }
        }
        (out, 0)
    }

    /// Logs in as the tenant's role and runs `select 1`. The flag is true when the failure was at
    /// the connection level (the server, not the tenant).
    async fn check_one(
        &self,
        base: &tokio_postgres::Config,
        t: &Tenant,
        sealed: Option<&Sealed>,
        opts: &HealthOptions,
    ) -> (Checked, bool) {
        let Some(sealed) = sealed else {
            return (unreachable(t, "the tenant has no password sealed"), false);
        };
        let password = match self.open_sealed(&format!("tenant:{}", t.id), sealed) {
            Ok(p) => p,
            Err(e) => return (unreachable(t, &e.to_string()), false),
        };
        let mut config = base.clone();
        config
            .user(&t.role)
            .password(password.expose())
            .dbname(&t.database)
            .application_name("pgfleet health")
            .connect_timeout(opts.timeout);
        if t.mode == Mode::Schema {
            config.options(format!("-c search_path={},public", t.schema));
        }
        let started = Instant::now();
        let attempt = async {
            let (client, connection) = config.connect(tokio_postgres::NoTls).await?;
            tokio::spawn(async move {
                let _ = connection.await;
            });
            client.simple_query("select 1").await?;
            Ok::<_, tokio_postgres::Error>(())
        };
        let result = match tokio::time::timeout(opts.timeout * 2, attempt).await {
            Ok(r) => r.map_err(|e| (pgfleet_pg::describe(&e), e.as_db_error().is_none())),
            Err(_) => Err((format!("no answer within {:?}", opts.timeout * 2), true)),
        };
        let latency = started.elapsed();
        match result {
            Ok(()) => (
                Checked {
                    id: t.id.clone(),
                    health: if latency > opts.degraded_after {
                        Health::Degraded
                    } else {
                        Health::Healthy
                    },
                    latency_ms: Some(latency.as_secs_f64() * 1000.0),
                    error: (latency > opts.degraded_after).then(|| {
                        format!(
                            "answered in {:.0} ms (degraded above {} ms)",
                            latency.as_secs_f64() * 1000.0,
                            opts.degraded_after.as_millis()
                        )
                    }),
                },
                false,
            ),
            Err((error, connection)) => (unreachable(t, &error), connection),
        }
    }
}

fn unreachable(t: &Tenant, error: &str) -> Checked {
    Checked {
        id: t.id.clone(),
        health: Health::Unreachable,
        latency_ms: None,
        error: Some(error.to_string()),
    }
}
