//! Applying a plan to a live database, safely.
//!
//! - Consecutive transactional steps run in one transaction; a non-transactional step (e.g.
//!   `CREATE INDEX CONCURRENTLY`) runs on its own, and the planner writes those to be idempotent.
//! - Every statement runs under `lock_timeout` and `statement_timeout`. A lock timeout is retried with
//!   exponential backoff (the whole transaction, or the single step); before retrying a concurrent
//!   index build, the INVALID index it left behind is dropped.
//! - `check_function_bodies` is off, so functions may be created before the tables they use, and
//!   `search_path` is empty: every name in a plan is schema-qualified. `DateStyle` and `IntervalStyle`
//!   are the ones introspection prints constants in, so a plan's literals read back as written.
//!
//! [`apply_and_verify`] introspects again afterwards and fails with
//! [`ApplyError::NotConverged`] when anything still differs.

use std::time::{Duration, Instant};

use pgfleet_schema::planner::{self, PlanOptions};
use pgfleet_schema::{Model, Plan, Step};
use tokio_postgres::Client;

use crate::error::{PgError, describe};
use crate::{introspect, invalid_indexes};

/// How to apply.
#[derive(Debug, Clone)]
pub struct ApplyOptions {
    /// `lock_timeout` of every statement (0 = wait forever).
    pub lock_timeout: Duration,
    /// `statement_timeout` of every statement (0 = no limit).
    pub statement_timeout: Duration,
    /// How many times a lock timeout is retried before giving up.
    pub lock_retries: u32,
    /// First backoff; doubled after each retry.
    pub retry_backoff: Duration,
}

impl Default for ApplyOptions {
    fn default() -> Self {
        Self {
            lock_timeout: Duration::from_secs(5),
            statement_timeout: Duration::ZERO,
            lock_retries: 5,
            retry_backoff: Duration::from_millis(200),
        }
    }
}

/// Progress of an apply, for the CLI to print.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum ApplyEvent {
    /// A step is about to run.
    StepStarted {
        /// 1-based index.
        index: usize,
        /// Number of steps.
        total: usize,
        /// Its description.
        description: String,
    },
    /// A step finished.
    StepDone {
        /// 1-based index.
        index: usize,
        /// How long it took (for a transaction: counted when the transaction commits).
        elapsed: Duration,
    },
    /// A lock timeout; the group is retried after `backoff`.
    Retrying {
        /// 1-based index of the first step of the group.
        index: usize,
        /// Attempt number (2 = first retry).
        attempt: u32,
        /// How long it waits first.
        backoff: Duration,
    },
}

/// Why an apply failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ApplyError {
    /// A step failed; when it was part of a transaction, that transaction was rolled back.
    #[error("step {index} ({description}) failed: {reason}{}", if *.rolled_back { "; its transaction was rolled back, nothing of it was applied" } else { "" })]
    Step {
        /// 1-based index.
        index: usize,
        /// Its description.
        description: String,
        /// The SQL that failed.
        sql: String,
        /// PostgreSQL's message.
        reason: String,
        /// Whether the step's transaction was rolled back.
        rolled_back: bool,
    },
    /// A lock could not be taken within `lock_timeout`, even after retries.
    #[error(
        "step {index} ({description}) could not take its lock within the lock timeout after {attempts} attempts; retry when the database is less busy, or raise --lock-timeout"
    )]
    LockTimeout {
        /// 1-based index.
        index: usize,
        /// Its description.
        description: String,
        /// Attempts made.
        attempts: u32,
    },
    /// After applying, the database still differs from the desired schema.
    #[error("plan did not converge: after applying, {} step(s) still differ:\n{}", .remaining.steps.len(), .remaining.to_sql())]
    NotConverged {
        /// The plan from the applied state to the desired one.
        remaining: Plan,
    },
    /// Talking to the database failed outside a step.
    #[error(transparent)]
    Pg(#[from] PgError),
}

/// Groups consecutive transactional steps; each non-transactional step is its own group.
fn groups(plan: &Plan) -> Vec<(usize, Vec<&Step>)> {
    let mut out: Vec<(usize, Vec<&Step>)> = Vec::new();
    for (i, step) in plan.steps.iter().enumerate() {
        match out.last_mut() {
            Some((_, g)) if step.transactional && g.last().is_some_and(|s| s.transactional) => {
                g.push(step)
            }
            _ => out.push((i, vec![step])),
        }
    }
    out
}

fn millis(d: Duration) -> u128 {
    d.as_millis()
}

/// Applies `plan` to the database of `client`.
///
/// # Errors
/// [`ApplyError::Step`] for a failing statement, [`ApplyError::LockTimeout`] when retries are
/// exhausted.
pub async fn apply_plan(
    client: &Client,
    plan: &Plan,
    opts: &ApplyOptions,
    mut progress: impl FnMut(ApplyEvent),
) -> Result<(), ApplyError> {
    client
        .batch_execute(&format!(
            "SET lock_timeout = {}; SET statement_timeout = {}; SET check_function_bodies = off; \
             SET search_path = ''; SET standard_conforming_strings = on; SET client_min_messages = warning; \
             SET DateStyle = 'ISO, YMD'; SET IntervalStyle = 'postgres'",
            millis(opts.lock_timeout),
            millis(opts.statement_timeout)
        ))
        .await
        .map_err(|e| PgError::query("preparing the session", e))?;
    let result = run_plan(client, plan, opts, &mut progress).await;
    // Leave the caller's session as it was.
    let reset = client
        .batch_execute(
            "RESET lock_timeout; RESET statement_timeout; RESET check_function_bodies; \
             RESET search_path; RESET standard_conforming_strings; RESET client_min_messages; \
             RESET DateStyle; RESET IntervalStyle",
        )
        .await;
    result?;
    reset.map_err(|e| PgError::query("resetting the session", e))?;
    Ok(())
}

async fn run_plan(
    client: &Client,
    plan: &Plan,
    opts: &ApplyOptions,
    progress: &mut impl FnMut(ApplyEvent),
) -> Result<(), ApplyError> {
    let invalid_before = invalid_indexes::list(client, None).await?;
    let total = plan.steps.len();
    for (first, group) in groups(plan) {
        let mut attempt = 1;
        let mut backoff = opts.retry_backoff;
        loop {
            let started = Instant::now();
            match run_group(client, first, total, &group, progress).await {
                Ok(()) => {
                    if group.len() > 1 || group[0].transactional {
                        // Transaction: report each step done at commit.
                        for i in 0..group.len() {
                            progress(ApplyEvent::StepDone {
                                index: first + i + 1,
                                elapsed: if i + 1 == group.len() {
                                    started.elapsed()
                                } else {
                                    Duration::ZERO
                                },
                            });
                        }
                    } else {
                        progress(ApplyEvent::StepDone {
                            index: first + 1,
                            elapsed: started.elapsed(),
                        });
                    }
                    break;
                }
                Err((offset, e)) => {
                    let step = group[offset];
                    let lock = e.as_db_error().is_some_and(|d| d.code().code() == "55P03");
                    if lock && attempt <= opts.lock_retries {
                        attempt += 1;
                        progress(ApplyEvent::Retrying {
                            index: first + 1,
                            attempt,
                            backoff,
                        });
                        if !step.transactional {
                            // The INVALID leftover of this step's failed concurrent build (and
                            // any other that appeared since the apply started).
                            invalid_indexes::drop_except(client, None, &invalid_before, |name| {
                                tracing::info!(index = %name, "dropped the invalid leftover of a failed concurrent index build");
                            })
                            .await?;
                        }
                        tokio::time::sleep(backoff).await;
                        backoff *= 2;
                        continue;
                    }
                    if lock {
                        return Err(ApplyError::LockTimeout {
                            index: first + offset + 1,
                            description: step.description.clone(),
                            attempts: attempt,
                        });
                    }
                    return Err(ApplyError::Step {
                        index: first + offset + 1,
                        description: step.description.clone(),
                        sql: step.sql.clone(),
                        reason: describe(&e),
                        rolled_back: step.transactional,
                    });
                }
            }
        }
    }
    Ok(())
}

/// Runs one group; on failure returns the offset of the failing step in the group.
async fn run_group(
    client: &Client,
    first: usize,
    total: usize,
    group: &[&Step],
    progress: &mut impl FnMut(ApplyEvent),
) -> Result<(), (usize, tokio_postgres::Error)> {
    let in_tx = group[0].transactional;
    if in_tx {
        client.batch_execute("BEGIN").await.map_err(|e| (0, e))?;
    }
    for (offset, step) in group.iter().enumerate() {
        progress(ApplyEvent::StepStarted {
            index: first + offset + 1,
            total,
            description: step.description.clone(),
        });
        if let Err(e) = client.batch_execute(&step.sql).await {
            if in_tx {
                let _ = client.batch_execute("ROLLBACK").await;
            }
            return Err((offset, e));
        }
    }
    if in_tx {
        client
            .batch_execute("COMMIT")
            .await
            .map_err(|e| (group.len() - 1, e))?;
    }
    Ok(())
}

/// Applies `plan`, then introspects the database again and checks that nothing differs from
/// `desired` any more.
///
/// # Errors
/// As [`apply_plan`], plus [`ApplyError::NotConverged`] with the remaining plan.
pub async fn apply_and_verify(
    client: &Client,
    plan: &Plan,
    desired: &Model,
    opts: &ApplyOptions,
    progress: impl FnMut(ApplyEvent),
) -> Result<(), ApplyError> {
    apply_plan(client, plan, opts, progress).await?;
    let after = introspect::introspect(client).await?;
    let remaining = planner::plan(&after, desired, &PlanOptions::default());
    if remaining.is_empty() {
        Ok(())
    } else {
        Err(ApplyError::NotConverged { remaining })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use pgfleet_schema::Hazard;

    fn step(sql: &str, transactional: bool) -> Step {
        Step {
            description: sql.into(),
            sql: sql.into(),
            hazards: vec![Hazard::IndexBuild],
            transactional,
        }
    }

    #[test]
    fn consecutive_transactional_steps_share_one_transaction() {
        let plan = Plan {
            steps: vec![
                step("a", false),
                step("b", true),
                step("c", true),
                step("d", false),
                step("e", false),
                step("f", true),
            ],
        };
        let g: Vec<(usize, Vec<&str>)> = groups(&plan)
            .into_iter()
            .map(|(i, g)| (i, g.iter().map(|s| s.sql.as_str()).collect()))
            .collect();
        assert_eq!(
            g,
            vec![
                (0, vec!["a"]),
                (1, vec!["b", "c"]),
                (3, vec!["d"]),
                (4, vec!["e"]),
                (5, vec!["f"])
            ]
        );
    }
}
