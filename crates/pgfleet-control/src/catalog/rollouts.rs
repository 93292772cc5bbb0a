//! `pgfleet.rollouts`: each `migrate --all`, one function per query (the SQL in
//! `sql/rollout_*.sql`). A running rollout holds a session advisory lock (class
//! [`LOCK_CLASS`], the row id) on its process's lock session: PostgreSQL releases it when the
//! process dies, which is how the next run finds a rollout abandoned.

use tokio_postgres::GenericClient;

use crate::{ControlError, q};

/// The advisory-lock class of running rollouts.
pub(crate) const LOCK_CLASS: i32 = 0x7066_6c72;

/// Records a new rollout and locks it on `lock_session` in the same statement. Returns its id;
/// [`ControlError::RolloutRunning`] while another rollout runs.
pub(crate) async fn start(
    lock_session: &impl GenericClient,
    target: &str,
    owner: &str,
    total: i32,
    options: &serde_json::Value,
) -> Result<i64, ControlError> {
    let row = lock_session
        .query_opt(
            include_str!("sql/rollout_start.sql"),
            &[&LOCK_CLASS, &target, &owner, &total, &options.to_string()],
        )
        .await
        .map_err(q("recording the rollout"))?
        .map(|r| r.get(0));
    if let Some(id) = row {
        return Ok(id);
    }
    let running = lock_session
        .query_opt(include_str!("sql/rollout_running.sql"), &[])
        .await
        .map_err(q("reading the running rollout"))?;
    Err(match running {
        Some(r) => ControlError::RolloutRunning {
            id: r.get(0),
            owner: r.get(1),
        },
        // It ended between the insert and the look-up: the caller may try again.
        None => ControlError::RolloutRunning {
            id: 0,
            owner: "(it just ended; try again)".into(),
        },
    })
}

/// The counts of a rollout (at its end, or added by a batch of its progress).
#[derive(Debug, Clone, Copy, Default)]
pub(crate) struct Counts {
    pub failed: i32,
    pub migrated: i32,
    pub up_to_date: i32,
    pub not_run: i32,
    pub stopped: bool,
}

/// Records the end of a rollout: `failed` when a tenant failed or it stopped early, else `done`.
pub(crate) async fn finish(
    c: &impl GenericClient,
    id: i64,
    counts: Counts,
) -> Result<(), ControlError> {
    c.execute(
        include_str!("sql/rollout_finish.sql"),
        &[
            &id,
            &counts.failed,
            &counts.migrated,
            &counts.up_to_date,
            &counts.not_run,
            &i32::from(counts.stopped),
        ],
    )
    .await
    .map_err(q("recording the rollout"))?;
    Ok(())
}

/// Adds a batch of outcomes to a running rollout's counts (its live progress).
pub(crate) async fn progress(
    c: &impl GenericClient,
    id: i64,
    add: Counts,
) -> Result<(), ControlError> {
    c.execute(
        include_str!("sql/rollout_progress.sql"),
        &[
            &id,
            &add.failed,
            &add.migrated,
            &add.up_to_date,
            &add.not_run,
        ],
    )
    .await
    .map_err(q("recording the rollout's progress"))?;
    Ok(())
}

/// Records a rollout that ended with an error.
pub(crate) async fn fail(c: &impl GenericClient, id: i64) -> Result<(), ControlError> {
    c.execute(include_str!("sql/rollout_fail.sql"), &[&id])
        .await
        .map_err(q("recording the rollout"))?;
    Ok(())
}

/// Releases the lock of rollout `id` on `lock_session`.
pub(crate) async fn unlock(lock_session: &impl GenericClient, id: i64) -> Result<(), ControlError> {
    lock_session
        .execute(include_str!("sql/rollout_unlock.sql"), &[&LOCK_CLASS, &id])
        .await
        .map_err(q("recording the rollout"))?;
    Ok(())
}

/// Marks `running` rollouts whose process died (their lock is free) `abandoned`, on this
/// process's `lock_session`; a row that finished meanwhile keeps its state.
pub(crate) async fn abandon_dead(lock_session: &impl GenericClient) -> Result<(), ControlError> {
    let locked: Vec<i64> = lock_session
        .query(
            include_str!("sql/rollout_lock_abandoned.sql"),
            &[&LOCK_CLASS],
        )
        .await
        .map_err(q("looking for abandoned rollouts"))?
        .iter()
        .map(|r| r.get(0))
        .collect();
    if locked.is_empty() {
        return Ok(());
    }
    let marked = lock_session
        .query(include_str!("sql/rollout_mark_abandoned.sql"), &[&locked])
        .await
        .map_err(q("marking abandoned rollouts"));
    lock_session
        .query(
            include_str!("sql/rollout_unlock_many.sql"),
            &[&LOCK_CLASS, &locked],
        )
        .await
        .map_err(q("marking abandoned rollouts"))?;
    marked.map(|_| ())
}
