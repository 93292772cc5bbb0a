//! Reading the catalog page by page for the management API and the dashboard: tenants in key order
//! with filters, events newest first, rollouts, and the overview's counts. Every page is one
//! indexed query that stays fast at 100,000 tenants (keyset paging, never `OFFSET`).

use serde::Serialize;

use crate::catalog::rollouts;
use crate::tenant::Tenant;
use crate::{Control, ControlError, q};

/// The most items one page holds.
pub const MAX_PAGE: i64 = 1000;

/// Which tenants a page holds (every field `None`: all of them).
#[derive(Debug, Clone, Default)]
pub struct TenantFilter {
    /// In this state (`provisioning`, `ready`, `failed`, `dropping`).
    pub state: Option<String>,
    /// On this server.
    pub server: Option<String>,
    /// In this mode (`database`, `schema`).
    pub mode: Option<String>,
    /// At this schema version.
    pub version: Option<String>,
    /// Whose key contains this text.
    pub search: Option<String>,
}

/// One event of the audit trail.
#[derive(Debug, Clone, Serialize)]
pub struct EventRecord {
    /// Its id (pages of events go by id).
    pub id: i64,
    /// When (`timestamptz` text).
    pub at: String,
    /// The tenant's key, when it concerns one.
    pub tenant: Option<String>,
    /// What happened (`tenant.correction`, `tenant.migrate_failed`, `api.tenant.drop`, ...).
    pub kind: String,
    /// Who: the database role, or `token:NAME` for changes made through the management API.
    pub actor: String,
    /// Details.
    pub detail: serde_json::Value,
}

/// Which events a page holds.
#[derive(Debug, Clone, Default)]
pub struct EventFilter {
    /// Of this tenant key.
    pub tenant: Option<String>,
    /// Of this kind (`tenant.correction`) or kind family (`tenant`).
    pub kind: Option<String>,
    /// Migration outcomes of this rollout.
    pub rollout: Option<i64>,
}

/// One `migrate --all` run as recorded in the catalog. While it runs, its counts grow with each
/// batch of outcomes the run writes (every 200 ms at most), from every process.
#[derive(Debug, Clone, Serialize)]
pub struct Rollout {
    /// Its id.
    pub id: i64,
    /// The target version.
    pub target: String,
    /// The process that runs it.
    pub owner: String,
    /// When it started.
    pub started_at: String,
    /// When it ended.
    pub finished_at: Option<String>,
    /// `running`, `done`, `failed` or `abandoned` (its process died).
    pub state: String,
    /// Tenants in the run.
    pub total: i32,
    /// Tenants migrated.
    pub migrated: i32,
    /// Tenants already at the target.
    pub up_to_date: i32,
    /// Tenants that failed.
    pub failed: i32,
    /// Tenants not started.
    pub not_run: i32,
    /// What it was asked (canary, continue_on_error, ...).
    pub options: serde_json::Value,
}

impl Rollout {
    /// Tenants finished (whatever their outcome).
    pub fn done(&self) -> i32 {
        self.migrated + self.up_to_date + self.failed + self.not_run
    }
}

/// A tenant that needs attention.
#[derive(Debug, Clone, Serialize)]
pub struct Problem {
    /// Its key.
    pub key: String,
    /// Its state.
    pub state: String,
    /// What is wrong.
    pub problem: String,
    /// Since when (its last health check, or its creation).
    pub at: String,
}

/// The fleet at a glance.
#[derive(Debug, Clone, Serialize)]
pub struct Overview {
    /// Every tenant.
    pub total: i64,
    /// Tenants by state.
    pub by_state: std::collections::BTreeMap<String, i64>,
    /// Ready tenants by health.
    pub by_health: std::collections::BTreeMap<String, i64>,
}

impl Control {
    /// Up to `limit` tenants (at most [`MAX_PAGE`]) in key order after `after`, filtered; the second
    /// value is true when more follow.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn tenant_page(
        &self,
        filter: &TenantFilter,
        after: Option<&str>,
        limit: i64,
    ) -> Result<(Vec<Tenant>, bool), ControlError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self
            .catalog()
            .query(
                include_str!("catalog/sql/tenant_page.sql"),
                &[
                    &after,
                    &filter.state,
                    &filter.server,
                    &filter.mode,
                    &filter.version,
                    &filter.search,
                    &(limit + 1),
                ],
            )
            .await
            .map_err(q("listing tenants"))?;
        let more = rows.len() as i64 > limit;
        let tenants = rows
            .iter()
            .take(limit as usize)
            .map(Tenant::read)
            .collect::<Result<_, _>>()?;
        Ok((tenants, more))
    }

    /// Up to `limit` events (at most [`MAX_PAGE`]) older than event `before`, newest first,
    /// filtered; the second value is true when more follow.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn event_page(
        &self,
        filter: &EventFilter,
        before: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<EventRecord>, bool), ControlError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let rows = self
            .catalog()
            .query(
                include_str!("catalog/sql/event_page.sql"),
                &[
                    &before,
                    &filter.tenant,
                    &filter.kind,
                    &filter.rollout,
                    &(limit + 1),
                ],
            )
            .await
            .map_err(q("listing events"))?;
        let more = rows.len() as i64 > limit;
        let events = rows
            .iter()
            .take(limit as usize)
            .map(|r| EventRecord {
                id: r.get(0),
                at: r.get(1),
                tenant: r.get(2),
                kind: r.get(3),
                actor: r.get(4),
                detail: serde_json::from_str(r.get::<_, &str>(5)).unwrap_or_default(),
            })
            .collect();
        Ok((events, more))
    }

    /// Up to `limit` rollouts older than rollout `before`, newest first; the second value is true
    /// when more follow. Marks rollouts whose process died `abandoned` first.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn rollout_page(
        &self,
        before: Option<i64>,
        limit: i64,
    ) -> Result<(Vec<Rollout>, bool), ControlError> {
        let limit = limit.clamp(1, MAX_PAGE);
        let mut list = self.rollouts_where(before, None, limit + 1).await?;
        if list.iter().any(|r| r.state == "running") {
            // Its process may have died: mark it abandoned, and read the page again.
            rollouts::abandon_dead(&*self.lock_session().await?).await?;
            list = self.rollouts_where(before, None, limit + 1).await?;
        }
        let more = list.len() as i64 > limit;
        list.truncate(limit as usize);
        Ok((list, more))
    }

    /// Rollout `id`, if there is one.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn rollout(&self, id: i64) -> Result<Option<Rollout>, ControlError> {
        Ok(self.rollouts_where(None, Some(id), 1).await?.pop())
    }

    /// Rollout `id`, marked `abandoned` first when it is `running` but its process died.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn rollout_checked(&self, id: i64) -> Result<Option<Rollout>, ControlError> {
        let r = self.rollout(id).await?;
        if r.as_ref().is_some_and(|r| r.state == "running") {
            rollouts::abandon_dead(&*self.lock_session().await?).await?;
            return self.rollout(id).await;
        }
        Ok(r)
    }

    async fn rollouts_where(
        &self,
        before: Option<i64>,
        id: Option<i64>,
        limit: i64,
    ) -> Result<Vec<Rollout>, ControlError> {
        let rows = self
            .catalog()
            .query(
                include_str!("catalog/sql/rollout_list.sql"),
                &[&before, &id, &limit],
            )
            .await
            .map_err(q("listing rollouts"))?;
        Ok(rows
            .iter()
            .map(|r| Rollout {
                id: r.get(0),
                target: r.get(1),
                owner: r.get(2),
                started_at: r.get(3),
                finished_at: r.get(4),
                state: r.get(5),
                total: r.get(6),
                migrated: r.get(7),
                up_to_date: r.get(8),
                failed: r.get(9),
                not_run: r.get(10),
                options: serde_json::from_str(r.get::<_, &str>(11)).unwrap_or_default(),
            })
            .collect())
    }

    /// Tenants by state and health, in one catalog round trip.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn overview(&self) -> Result<Overview, ControlError> {
        let rows = self
            .catalog()
            .query(include_str!("catalog/sql/overview.sql"), &[])
            .await
            .map_err(q("reading the overview"))?;
        let mut o = Overview {
            total: 0,
            by_state: Default::default(),
            by_health: Default::default(),
        };
        for r in &rows {
            let (state, health, n): (String, String, i64) = (r.get(0), r.get(1), r.get(2));
            o.total += n;
            if state == "ready" {
                *o.by_health.entry(health).or_default() += n;
            }
            *o.by_state.entry(state).or_default() += n;
        }
        Ok(o)
    }

    /// The `limit` tenants that most recently failed, failed a migration or turned unhealthy.
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn problems(&self, limit: i64) -> Result<Vec<Problem>, ControlError> {
        let rows = self
            .catalog()
            .query(include_str!("catalog/sql/tenant_problems.sql"), &[&limit])
            .await
            .map_err(q("listing tenants with problems"))?;
        Ok(rows
            .iter()
            .map(|r| Problem {
                key: r.get(0),
                state: r.get(1),
                problem: r.get(2),
                at: r.get(3),
            })
            .collect())
    }

    /// Records an event made on behalf of `actor` (the management API names its token:
    /// `token:NAME`).
    ///
    /// # Errors
    /// Catalog errors.
    pub async fn record_event_as(
        &self,
        actor: &str,
        tenant: Option<&Tenant>,
        kind: &str,
        detail: serde_json::Value,
    ) -> Result<(), ControlError> {
        self.catalog()
            .execute(
                include_str!("catalog/sql/event_insert_as.sql"),
                &[
                    &actor,
                    &tenant.map(|t| t.id.as_str()),
                    &tenant.map(|t| t.key.as_str()),
                    &kind,
                    &detail.to_string(),
                ],
            )
            .await
            .map_err(q("recording an event"))?;
        Ok(())
    }
}
