//! The planner: orders the changes of a diff into a [`Plan`] of SQL steps tagged with hazards.
//!
//! A plan has three parts, in this order:
//!
//! 1. **Before the transaction** (non-transactional): `ALTER TYPE … ADD VALUE IF NOT EXISTS`, so the
//!    new enum labels are committed before anything uses them.
//! 2. **The transaction** (every step `transactional`): schemas, extensions, enums, sequences,
//!    functions and domains are created first; then views, triggers, policies, constraints and indexes that go
//!    away or are rebuilt are dropped (dependents first); then tables are created (partitions after
//!    their parents) and columns altered; type swaps convert their columns; constraints are added
//!    (foreign keys last); sequences get their owners; views are created in dependency order;
//!    triggers, row-level security, policies and comments follow; last, tables (referencing ones
//!    first), sequences, functions, domains, types, extensions and schemas are dropped. Never
//!    `CASCADE`. Partitions whose bound changes are detached before tables are created and attached
//!    again after tables are dropped; partitions dropped from a parent that stays are dropped before
//!    tables are created; so bounds never overlap on the way.
//! 3. **After the transaction**: with [`PlanOptions::online`], indexes of existing tables are built
//!    and dropped `CONCURRENTLY` (non-transactional, idempotent with `IF [NOT] EXISTS`), a changed
//!    index is built under a temporary name, the old one dropped and the new one renamed; then
//!    constraints added `NOT VALID` in the transaction are validated (`VALIDATE CONSTRAINT`, also
//!    marked non-transactional so it runs on its own, after the transaction committed).
//!
//! **Executor contract**: run steps in order; a step with `transactional == false` runs on its own,
//! outside any transaction block; consecutive transactional steps run in one transaction. The first
//! and last parts are always separated from the transaction by a non-transactional step, so the
//! transaction of part 2 is exactly the run of transactional steps between them (the rename and
//! comment steps of part 3 each follow a non-transactional step). The executor should set
//! `check_function_bodies = off` (functions are created before the tables their bodies use).
//!
//! Layout: [`plan`] and [`plan_changes`] (here) filter the changes ([`PlanOptions::additive_only`],
//! in `additive`), learn about the change set (`context`), lower each change into steps (`lower`,
//! with a module per kind of object) and sort the steps by phase (`phase`). `order` computes the
//! dependency orders of tables and views, `render` the SQL text, `conversion` what a column type
//! change does to the stored values.

mod additive;
mod context;
mod conversion;
mod lower;
mod options;
mod order;
mod phase;
mod render;

pub use options::PlanOptions;

use additive::is_additive;
use context::Ctx;
use phase::Staged;

use crate::change::Change;
use crate::diff::diff;
use crate::model::Model;
use crate::plan::Plan;

/// The plan that turns `current` into `desired`: [`diff`] then [`plan_changes`].
///
/// Identical models give an empty plan; the plan is deterministic.
pub fn plan(current: &Model, desired: &Model, opts: &PlanOptions) -> Plan {
    let changes = diff(current, desired);
    plan_changes(current, desired, &changes, opts)
}

/// Orders and renders `changes` (as produced by [`diff`] for these two models) into a plan. The
/// models give context: which tables exist already, what views depend on, what references what.
pub fn plan_changes(
    current: &Model,
    desired: &Model,
    changes: &[Change],
    opts: &PlanOptions,
) -> Plan {
    let kept: Vec<&Change> = changes
        .iter()
        .filter(|c| !opts.additive_only || is_additive(c, current))
        .collect();
    if kept.is_empty() {
        return Plan::default();
    }
    let ctx = Ctx::new(current, desired, opts, &kept);
    let mut staged = Staged::default();
    ctx.lower_all(&kept, &mut staged);
    staged.into_plan()
}

#[cfg(test)]
mod tests;
