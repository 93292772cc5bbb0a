//! [`Router::run`]: one statement or one transaction of a SQL front door, through the result
//! cache, healed, retried when the server rolled it back, and invalidating what it wrote.

use std::sync::Arc;
use std::time::Duration;

use super::{Limits, Statement, TextResult, Transaction, WireBackend, WireError, WireLease};
use crate::cache::{Analysis, Cache, CacheStatus, Kind, Scope, Shape};
use crate::{Directory, Router, RouterError};

/// What a front door runs.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Work {
    /// One statement, in its own transaction.
    Single(Statement),
    /// Statements in one transaction.
    Batch {
        /// The statements.
        statements: Vec<Statement>,
        /// How the transaction starts.
        tx: Transaction,
    },
}

impl Work {
    fn statements(&self) -> &[Statement] {
        match self {
            Self::Single(s) => std::slice::from_ref(s),
            Self::Batch { statements, .. } => statements,
        }
    }
}

/// What [`Router::run`] did.
#[derive(Debug, Clone)]
pub struct Ran {
    /// One result per statement.
    pub results: Vec<Arc<TextResult>>,
    /// A repair ran and the work ran once more.
    pub healed: bool,
    /// What the cache did (a batch is never served from it).
    pub cache: CacheStatus,
}

/// Bounds of [`Router::query_cached`]: 64 MiB of rows, 60 s.
pub const LIBRARY_LIMITS: Limits = Limits {
    max_response: 64 << 20,
    timeout: Duration::from_secs(60),
};

struct Plan<'a> {
    cache: &'a Cache,
    key: &'a str,
    shapes: Vec<Arc<Shape>>,
    /// A single cacheable read: for how long.
    max_age: Option<Duration>,
}

impl Plan<'_> {
    fn needs_analysis(&self, shape: &Shape) -> bool {
        self.cache.enabled()
            && match shape.kind {
                Kind::Write => true,
                Kind::Read => self.max_age.is_some() || !shape.functions.is_empty(),
                Kind::Neutral | Kind::Other => false,
            }
    }

    /// What the work may have changed, given what the server said of each statement: for a
    /// single write with a row key its target's rows of those values only.
    fn scope(&self, work: &Work, analyses: Option<&[Option<Arc<Analysis>>]>) -> Option<Scope> {
        let scope = self.tables(analyses)?;
        if let (Scope::Tables(tables), Work::Single(s), Some([Some(a)]), [shape]) =
            (&scope, work, analyses, self.shapes.as_slice())
            && shape.kind == Kind::Write
            && let Some(target) = a.target
            && let Some((column, values)) = a.keys(shape, &s.params).into_iter().flatten().next()
        {
            return Some(Scope::Rows {
                tables: tables.iter().copied().filter(|t| *t != target).collect(),
                table: target,
                column,
                values,
            });
        }
        Some(scope)
    }

    /// What the work may have changed, by relation.
    fn tables(&self, analyses: Option<&[Option<Arc<Analysis>>]>) -> Option<Scope> {
        let mut tables = Vec::new();
        let mut all = None;
        for (i, shape) in self.shapes.iter().enumerate() {
            let analysis = analyses.and_then(|a| a.get(i).cloned().flatten());
            match (shape.kind, analysis) {
                (Kind::Neutral, _) => {}
                (Kind::Other, _) => all = Some(true),
                (Kind::Read, None) if !self.needs_analysis(shape) => {}
                // A trigger, a rule or a function of the tenant's may also change its schema.
                (_, Some(a)) if a.everything => all = Some(true),
                (Kind::Read, Some(_)) => {}
                (Kind::Write, Some(a)) => tables.extend_from_slice(&a.writes),
                (_, None) => {
                    all.get_or_insert(false);
                }
            }
        }
        match all {
            Some(schema) => Some(Scope::All { schema }),
            None if tables.is_empty() => None,
            None => {
                tables.sort_unstable();
                tables.dedup();
                Some(Scope::Tables(tables))
            }
        }
    }
}

impl<D: Directory> Router<D> {
    /// The result cache.
    pub fn cache(&self) -> &Arc<Cache> {
        &self.snapshot.cache
    }

    /// Runs `work` for tenant `key` on a `backend` connection chosen as
    /// [`Router::with_wire`] chooses (`trusted`: the application's own caller), the way the SQL
    /// front doors do:
    /// - a single cacheable read ([`Cache::max_age`]) is served from the cache when a fresh result
    ///   is there, and stored after it ran otherwise;
    /// - a missing table, column or schema is repaired and the work runs once more;
    /// - a shared connection that did not switch to the tenant is replaced by the tenant's own
    ///   login and the work runs once more (nothing of it ran);
    /// - work the server rolled back for a serialization failure or a deadlock runs again
    ///   ([`Router::retry_rolled_back`]);
    /// - after it ran, the cached results it may have made stale are dropped, here and (through
    ///   [`Cache::subscribe`]) in other processes.
    ///
    /// # Errors
    /// As [`Router::with_wire`]; a query error carries the [`WireError`].
    pub async fn run(
        &self,
        key: &str,
        backend: &WireBackend,
        trusted: bool,
        work: &Work,
        limits: Limits,
    ) -> Result<Ran, RouterError> {
        let cache = &self.snapshot.cache;
        let shapes: Vec<Arc<Shape>> = if cache.enabled() {
            work.statements()
                .iter()
                .map(|s| cache.shape(&s.sql))
                .collect()
        } else {
            Vec::new()
        };
        let max_age = match (work, shapes.first()) {
            (Work::Single(s), Some(shape)) => cache.max_age(shape, &s.params),
            _ => None,
        };
        if let (Some(_), Work::Single(s)) = (max_age, work)
            && let Some(hit) = cache.get(key, trusted, s)
        {
            // A hit waits for nothing: without this, a task that keeps hitting would never give
            // its thread back to the connections of other tasks' misses.
            tokio::task::coop::consume_budget().await;
            return Ok(Ran {
                results: vec![hit],
                healed: false,
                cache: CacheStatus::Hit,
            });
        }
        let plan = Plan {
            cache,
            key,
            shapes,
            max_age,
        };
        // A read that is neither cached nor calls a function leaves the cache alone: no
        // bookkeeping on its way.
        let tracked = max_age.is_some()
            || plan.shapes.iter().any(|s| match s.kind {
                Kind::Write | Kind::Other => true,
                Kind::Read => !s.functions.is_empty(),
                Kind::Neutral => false,
            });
        let ticket = if tracked {
            let entry = self.snapshot.entry(key).await?;
            Some(cache.ticket(key, &entry.placement.tenant_id, trusted))
        } else {
            None
        };
        let mut attempts;
        let mut retries = 0;
        let outcome = loop {
            let mut tries = 0;
            let outcome = loop {
                attempts = 0u32;
                tries += 1;
                let outcome = self
                    .with_wire(key, backend, trusted, |conn| {
                        attempts += 1;
                        execute(conn, work, limits, &plan)
                    })
                    .await;
                // A failed switch ran nothing; once more, on the tenant's own login from now on.
                if tries > 1 || !matches!(outcome, Err(RouterError::RoleSwitch { .. })) {
                    break outcome;
                }
            };
            match &outcome {
                Err(e) if self.retry_rolled_back(key, retries + 1, e).await => retries += 1,
                _ => break outcome,
            }
        };
        let healed = attempts > 1;
        let (results, analyses) = match outcome {
            Ok(done) => done,
            Err(e) => {
                // A statement the server refused changed nothing — unless the work could commit
                // part of itself first (`COMMIT` in a batch, `DO`, `CALL`); after any other
                // failure what ran is unknown.
                let partial = plan
                    .shapes
                    .iter()
                    .any(|s| matches!(s.kind, Kind::Neutral | Kind::Other));
                let refused = !partial
                    && matches!(&e, RouterError::Query { source, .. }
                    if matches!(source.downcast_ref::<WireError>(), Some(WireError::Server(_))));
                if !refused && let (Some(t), Some(scope)) = (&ticket, plan.scope(work, None)) {
                    cache.invalidate(key, t.tenant_id(), scope);
                }
                return Err(e);
            }
        };
        if let (Some(t), Some(scope)) = (&ticket, plan.scope(work, Some(&analyses))) {
            cache.invalidate(key, t.tenant_id(), scope);
        }
        let results: Vec<Arc<TextResult>> = results.into_iter().map(Arc::new).collect();
        let mut status = CacheStatus::Bypass;
        if let (Some(age), Work::Single(s)) = (max_age, work) {
            status = CacheStatus::Miss;
            if let (Some(Some(a)), Some(r), Some(ticket)) =
                (analyses.first(), results.first(), &ticket)
                && a.cacheable
                && !a.everything
            {
                let target = a.target.unwrap_or_default();
                let keys = a
                    .keys(&plan.shapes[0], &s.params)
                    .into_iter()
                    .flatten()
                    .flat_map(|(column, values)| {
                        values.into_iter().map(move |v| (target, column.clone(), v))
                    })
                    .collect();
                cache.store(ticket, s, r.clone(), (&a.reads, keys), age);
            }
        }
        Ok(Ran {
            results,
            healed,
            cache: status,
        })
    }

    /// Drops every cached result of tenant `key`, here and in the fleet's other processes: for an
    /// application that wrote around the cache (through a [`TenantClient`](crate::TenantClient),
    /// or straight to the database) and wants its next reads fresh before their max age.
    ///
    /// # Errors
    /// As [`Router::client`] when the tenant cannot be placed.
    pub async fn invalidate_tenant(&self, key: &str) -> Result<(), RouterError> {
        let entry = self.snapshot.entry(key).await?;
        self.snapshot.cache.invalidate(
            key,
            &entry.placement.tenant_id,
            Scope::All { schema: false },
        );
        Ok(())
    }

    /// Runs one statement for tenant `key` as a trusted caller, through the result cache (see
    /// [`Router::run`]): a read cached by a `/* pgfleet:cache max-age=… */` comment or by the
    /// configured tables comes from memory while fresh, and a write run here drops what it made
    /// stale. Parameters are PostgreSQL text (`None`: NULL), results PostgreSQL's text output.
    /// Bounded by [`LIBRARY_LIMITS`].
    ///
    /// Writes made around pgfleet (straight to the database, or through a
    /// [`TenantClient`](crate::TenantClient)) are not seen: results they make stale are served
    /// until their max age, unless [`Cache::invalidate`] is called.
    ///
    /// # Errors
    /// As [`Router::run`].
    pub async fn query_cached(
        &self,
        key: &str,
        sql: &str,
        params: &[Option<&str>],
    ) -> Result<(Arc<TextResult>, CacheStatus), RouterError> {
        let work = Work::Single(Statement {
            sql: sql.to_string(),
            params: params.iter().map(|p| p.map(str::to_string)).collect(),
        });
        let backend = &self.snapshot.wire;
        let mut ran = self.run(key, backend, true, &work, LIBRARY_LIMITS).await?;
        let result = ran
            .results
            .pop()
            .unwrap_or_else(|| Arc::new(TextResult::default()));
        Ok((result, ran.cache))
    }
}

type Done = (Vec<TextResult>, Vec<Option<Arc<Analysis>>>);

async fn execute(
    mut conn: WireLease,
    work: &Work,
    limits: Limits,
    plan: &Plan<'_>,
) -> Result<Done, WireError> {
    let mut analyses = Vec::with_capacity(plan.shapes.len());
    for (s, shape) in work.statements().iter().zip(&plan.shapes) {
        analyses.push(if plan.needs_analysis(shape) {
            plan.cache
                .analysis(plan.key, &s.sql, shape, &mut conn, &limits)
                .await?
        } else {
            None
        });
    }
    let results = match work {
        Work::Single(s) => vec![conn.query(s, &limits).await?],
        Work::Batch { statements, tx } => conn.batch(statements, tx, &limits).await?,
    };
    Ok((results, analyses))
}
