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

mod conversion;
mod lower;
mod order;
mod render;

use std::collections::{BTreeMap, BTreeSet};

use crate::diff::{Change, diff};
use crate::model::{ConstraintKind, Model, QualName, TableKind};
use crate::plan::{Plan, Step};

/// How to plan.
#[derive(Debug, Clone)]
pub struct PlanOptions {
    /// Build indexes on existing tables `CONCURRENTLY` after the transaction, and add `CHECK` and
    /// foreign-key constraints to existing tables `NOT VALID` with a separate `VALIDATE CONSTRAINT`.
    /// When false, everything runs inside the one transaction, under stronger locks. Default: true.
    pub online: bool,
    /// Only create what is missing: new schemas, extensions, types, enum labels, sequences,
    /// functions, tables, columns, constraints, indexes, triggers, policies and views (plus row-level
    /// security on created tables). Nothing is dropped, altered or recreated, so the plan does not
    /// converge when other changes exist; used to repair a tenant at run time. Default: false.
    pub additive_only: bool,
}

impl Default for PlanOptions {
    fn default() -> Self {
        Self {
            online: true,
            additive_only: false,
        }
    }
}

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
    ctx.stage_cycle_breaks(&mut staged);
    for change in &kept {
        ctx.lower(change, &mut staged);
    }
    staged.into_plan()
}

/// True for a change that only creates something `current` does not have.
fn is_additive(change: &Change, cur: &Model) -> bool {
    let table_has =
        |t: &QualName, f: &dyn Fn(&crate::model::Table) -> bool| cur.tables.get(t).is_some_and(f);
    match change {
        Change::AddSchema { .. }
        | Change::AddExtension { .. }
        | Change::AddEnum { .. }
        | Change::AddEnumValue { .. }
        | Change::AddDomain { .. }
        | Change::AddSequence { .. }
        | Change::AddFunction { .. }
        | Change::AddTable { .. } => true,
        Change::AddView { name, .. } => !cur.views.contains_key(name),
        // Ownership of a sequence that is being created (it belongs to the new table's column).
        Change::AlterSequenceOwner { name, .. } => !cur.sequences.contains_key(name),
        Change::AddColumn { table, column, .. } => {
            !table_has(table, &|t| t.columns.contains_key(column))
        }
        Change::AddConstraint { table, name, .. } => {
            !table_has(table, &|t| t.constraints.contains_key(name))
        }
        Change::AddIndex { table, name, .. } => cur.index(table, name).is_none(),
        Change::AddTrigger { table, name, .. } => {
            !table_has(table, &|t| t.triggers.contains_key(name))
        }
        Change::AddPolicy { table, name, .. } => {
            !table_has(table, &|t| t.policies.contains_key(name))
        }
        Change::AlterTableRls { name, enabled } => *enabled && !cur.tables.contains_key(name),
        Change::AlterTableForceRls { name, forced } => *forced && !cur.tables.contains_key(name),
        // The comment of an object the repair creates comes with it.
        Change::AlterComment {
            target,
            comment: Some(_),
        } => !comment_target_exists(target, cur),
        _ => false,
    }
}

/// Whether the object a comment is about exists in `cur`.
fn comment_target_exists(target: &crate::diff::CommentTarget, cur: &Model) -> bool {
    use crate::diff::CommentTarget as T;
    let table = |t: &QualName| cur.tables.get(t);
    match target {
        T::Schema(s) => cur.schemas.contains_key(s),
        T::Extension(e) => cur.extensions.contains_key(e),
        T::Type(n) => cur.enums.contains_key(n),
        T::Domain(n) => cur.domains.contains_key(n),
        T::Sequence(n) => cur.sequences.contains_key(n),
        T::Table(n) => cur.tables.contains_key(n),
        T::Column { table: t, column } => table(t).is_some_and(|t| t.columns.contains_key(column)),
        T::Constraint { table: t, name } => {
            table(t).is_some_and(|t| t.constraints.contains_key(name))
        }
        T::Index { table: t, name } => cur.index(t, name).is_some(),
        T::Trigger { table: t, name } => table(t).is_some_and(|t| t.triggers.contains_key(name)),
        T::Policy { table: t, name } => table(t).is_some_and(|t| t.policies.contains_key(name)),
        T::View(n) | T::MaterializedView(n) => cur.views.contains_key(n),
        T::Function(id) | T::Procedure(id) => cur.functions.contains_key(id),
    }
}

/// Where a step goes. Steps sort by phase, then by two ranks inside it, then by the order they
/// were produced in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
enum Phase {
    PreEnumValues,
    CreateSchemas,
    CreateExtensions,
    CreateTypes,
    CreateSequences,
    CreateFunctions,
    CreateDomains,
    AlterDomains,
    DomainFunctions,
    DropViews,
    DropTriggers,
    DropPolicies,
    DropForeignKeys,
    DropConstraints,
    DropIndexes,
    DetachPartitions,
    DropReplacedTables,
    CreateTables,
    AlterTables,
    AlterColumns,
    ConvertColumns,
    LateFunctions,
    AddConstraints,
    CreateIndexes,
    AddForeignKeys,
    ValidateConstraints,
    SequenceOwners,
    CreateViews,
    CreateTriggers,
    RowSecurity,
    CreatePolicies,
    Comments,
    DropAtomicFunctions,
    DropTables,
    AttachPartitions,
    DropSequences,
    DropFunctions,
    DropDomains,
    DropTypes,
    DropExtensions,
    DropSchemas,
    PostDropIndexes,
    PostCreateIndexes,
    PostComments,
    PostValidate,
}

/// Steps with their sort keys.
#[derive(Debug, Default)]
struct Staged {
    items: Vec<((Phase, u32, u32), Step)>,
}

impl Staged {
    fn push(&mut self, phase: Phase, a: u32, b: u32, step: Step) {
        self.items.push(((phase, a, b), step));
    }

    fn into_plan(mut self) -> Plan {
        // Stable: steps with equal keys keep the order they were produced in.
        self.items.sort_by_key(|(key, _)| *key);
        Plan {
            steps: self.items.into_iter().map(|(_, s)| s).collect(),
        }
    }
}

/// What the planner knows about the whole change set.
struct Ctx<'a> {
    cur: &'a Model,
    des: &'a Model,
    opts: &'a PlanOptions,
    /// Tables created by the plan (new or replaced).
    created_tables: BTreeSet<QualName>,
    /// Tables dropped and created again.
    replaced_tables: BTreeSet<QualName>,
    /// Tables dropped for good.
    dropped_tables: BTreeSet<QualName>,
    /// Domains created by the plan (new or swapped): functions whose signature names one are
    /// created after the domains.
    created_domains: BTreeSet<QualName>,
    /// Views created by the plan (new or recreated).
    created_views: BTreeSet<QualName>,
    /// Columns of existing tables dropped (or dropped and re-added).
    dropped_columns: BTreeSet<(QualName, String)>,
    /// Tables with a column type change: their changed indexes are dropped inside the transaction.
    rewritten_tables: BTreeSet<QualName>,
    /// Tables referenced by foreign keys the plan adds: their new unique indexes are built inside
    /// the transaction, before the foreign keys.
    fk_targets: BTreeSet<QualName>,
    /// Relations (tables, views, sequences, indexes, constraint indexes) the plan creates: an index
    /// dropped under one of these names is dropped inside the transaction, before the creation.
    created_relations: BTreeSet<QualName>,
    /// Indexes built after the transaction: their comments follow them there.
    post_built: BTreeSet<(QualName, String)>,
    /// Tables referenced by a foreign key now: dropping one of their partitions needs a `DETACH`
    /// first (the foreign key depends on each partition).
    fk_referenced: BTreeSet<QualName>,
    /// Alphabetical rank of every table, to keep each table's column steps together.
    table_rank: BTreeMap<QualName, u32>,
    /// Creation order of created tables (parents first).
    create_rank: BTreeMap<QualName, u32>,
    /// Drop order of tables dropped before tables are created (replaced ones and what hangs on them).
    early_drops: order::DropOrder,
    /// Drop order of the other dropped tables.
    late_drops: order::DropOrder,
    /// Drop order of views (dependents first).
    view_drop_rank: BTreeMap<QualName, u32>,
    /// Creation order of created and replaced views (dependencies first).
    view_create_rank: BTreeMap<QualName, u32>,
}

impl<'a> Ctx<'a> {
    fn new(cur: &'a Model, des: &'a Model, opts: &'a PlanOptions, changes: &[&Change]) -> Self {
        let mut ctx = Ctx {
            cur,
            des,
            opts,
            created_tables: BTreeSet::new(),
            replaced_tables: BTreeSet::new(),
            dropped_tables: BTreeSet::new(),
            created_domains: BTreeSet::new(),
            created_views: BTreeSet::new(),
            dropped_columns: BTreeSet::new(),
            rewritten_tables: BTreeSet::new(),
            fk_targets: BTreeSet::new(),
            created_relations: BTreeSet::new(),
            post_built: BTreeSet::new(),
            fk_referenced: cur
                .tables
                .values()
                .flat_map(|t| t.constraints.values())
                .filter_map(|c| c.references.clone())
                .collect(),
            table_rank: BTreeMap::new(),
            create_rank: BTreeMap::new(),
            early_drops: order::DropOrder::default(),
            late_drops: order::DropOrder::default(),
            view_drop_rank: BTreeMap::new(),
            view_create_rank: BTreeMap::new(),
        };
        let mut dropped_views = BTreeSet::new();
        let mut replaced_views = BTreeSet::new();
        let mut tables = BTreeSet::new();
        let in_schema = |t: &QualName, name: &str| QualName::new(t.schema.clone(), name);
        for change in changes {
            match change {
                Change::AddTable { name, .. } => {
                    ctx.created_tables.insert(name.clone());
                    ctx.created_relations.insert(name.clone());
                }
                Change::ReplaceTable { name, .. } => {
                    ctx.created_tables.insert(name.clone());
                    ctx.replaced_tables.insert(name.clone());
                }
                Change::DropTable { name } => {
                    ctx.dropped_tables.insert(name.clone());
                }
                Change::AddDomain { name, .. } => {
                    ctx.created_domains.insert(name.clone());
                }
                Change::AddView { name, .. } => {
                    ctx.created_views.insert(name.clone());
                    if !cur.views.contains_key(name) {
                        ctx.created_relations.insert(name.clone());
                    }
                }
                Change::ReplaceView { name, .. } => {
                    replaced_views.insert(name.clone());
                }
                Change::DropView { name, .. } => {
                    dropped_views.insert(name.clone());
                }
                Change::AddSequence { name, .. } => {
                    ctx.created_relations.insert(name.clone());
                }
                Change::AddConstraint {
                    table,
                    name,
                    constraint,
                } => match constraint.kind {
                    ConstraintKind::ForeignKey => {
                        ctx.fk_targets.extend(constraint.references.clone());
                    }
                    ConstraintKind::Check => {}
                    _ => {
                        ctx.created_relations.insert(in_schema(table, name));
                    }
                },
                Change::AddIndex { table, name, .. } => {
                    ctx.created_relations.insert(in_schema(table, name));
                }
                Change::DropColumn { table, column }
                | Change::ReplaceColumn { table, column, .. } => {
                    ctx.dropped_columns.insert((table.clone(), column.clone()));
                }
                Change::AlterColumnType { table, .. } => {
                    ctx.rewritten_tables.insert(table.clone());
                }
                Change::ReplaceEnum { uses, .. } => {
                    ctx.rewritten_tables
                        .extend(uses.iter().map(|u| u.table.clone()));
                    tables.extend(uses.iter().map(|u| u.table.clone()));
                }
                Change::ReplaceDomain { name, uses, .. } => {
                    ctx.created_domains.insert(name.clone());
                    ctx.rewritten_tables
                        .extend(uses.iter().map(|u| u.table.clone()));
                    tables.extend(uses.iter().map(|u| u.table.clone()));
                }
                _ => {}
            }
            if let Some(t) = change_table(change) {
                tables.insert(t.clone());
            }
        }
        ctx.table_rank = tables
            .into_iter()
            .enumerate()
            .map(|(i, t)| (t, i as u32))
            .collect();
        ctx.create_rank = order::create_order(des, &ctx.created_tables);
        let (early, late) = order::split_drops(cur, &ctx.replaced_tables, &ctx.dropped_tables);
        ctx.early_drops = order::DropOrder::new(cur, &early);
        ctx.late_drops = order::DropOrder::new(cur, &late);
        ctx.view_drop_rank = order::view_drop_order(cur, &dropped_views);
        let creating: BTreeSet<QualName> =
            ctx.created_views.union(&replaced_views).cloned().collect();
        ctx.view_create_rank = order::view_create_order(des, &creating);
        for change in changes {
            match change {
                Change::AddIndex { table, name, index }
                | Change::ReplaceIndex { table, name, index }
                    if ctx.build_post(table, &index.definition) =>
                {
                    ctx.post_built.insert((table.clone(), name.clone()));
                }
                _ => {}
            }
        }
        ctx
    }

    /// True for a table that exists before the plan runs and is not recreated by it.
    fn existing_table(&self, t: &QualName) -> bool {
        self.cur.tables.contains_key(t) && !self.created_tables.contains(t)
    }

    /// True for a table or materialized view that exists before the plan and is not recreated.
    fn existing_relation(&self, r: &QualName) -> bool {
        self.existing_table(r)
            || (self.cur.views.contains_key(r) && !self.created_views.contains(r))
    }

    /// True for a partitioned table (no `CONCURRENTLY`, no `NOT VALID` foreign keys there).
    fn partitioned(&self, t: &QualName) -> bool {
        self.des
            .tables
            .get(t)
            .or_else(|| self.cur.tables.get(t))
            .is_some_and(|t| t.kind == TableKind::Partitioned)
    }

    /// True when an index with this definition on `rel` is built `CONCURRENTLY` after the transaction.
    fn build_post(&self, rel: &QualName, definition: &str) -> bool {
        self.opts.online
            && self.existing_relation(rel)
            && !self.partitioned(rel)
            && !(render::is_unique_index(definition) && self.fk_targets.contains(rel))
    }

    /// True when index `name` of `rel` is dropped `CONCURRENTLY` after the transaction.
    fn drop_post(&self, rel: &QualName, name: &str) -> bool {
        self.opts.online
            && self.existing_relation(rel)
            && !self.partitioned(rel)
            && !self.rewritten_tables.contains(rel)
            && !self
                .created_relations
                .contains(&QualName::new(rel.schema.clone(), name))
    }

    /// True when the table or column that owns a sequence is dropped by the plan (which would drop
    /// the sequence with it).
    fn owner_goes_away(&self, owner: &(QualName, String)) -> bool {
        self.dropped_tables.contains(&owner.0)
            || self.replaced_tables.contains(&owner.0)
            || self.dropped_columns.contains(owner)
    }

    /// True when `table` or one of its partition ancestors is referenced by a foreign key now.
    fn referenced_with_ancestors(&self, table: &QualName) -> bool {
        let mut t = Some(table);
        let mut hops = 0;
        while let Some(name) = t {
            if self.fk_referenced.contains(name) {
                return true;
            }
            hops += 1;
            t = self
                .cur
                .tables
                .get(name)
                .and_then(|t| t.partition_of.as_ref())
                .map(|p| &p.parent)
                .filter(|_| hops < 64);
        }
        false
    }

    fn table_rank(&self, t: &QualName) -> u32 {
        self.table_rank.get(t).copied().unwrap_or(0)
    }
}

/// The table (or materialized view) a change is about, if any.
fn change_table(change: &Change) -> Option<&QualName> {
    match change {
        Change::AddTable { name, .. }
        | Change::ReplaceTable { name, .. }
        | Change::DropTable { name }
        | Change::AlterTableLogged { name, .. }
        | Change::AlterPartitionBound { name, .. }
        | Change::AlterTableRls { name, .. }
        | Change::AlterTableForceRls { name, .. } => Some(name),
        Change::AddColumn { table, .. }
        | Change::ReplaceColumn { table, .. }
        | Change::AlterColumnType { table, .. }
        | Change::AlterColumnDefault { table, .. }
        | Change::AlterColumnNotNull { table, .. }
        | Change::AlterColumnIdentity { table, .. }
        | Change::DropColumnExpression { table, .. }
        | Change::DropColumn { table, .. } => Some(table),
        _ => None,
    }
}

#[cfg(test)]
mod tests;
