//! [`Ctx`]: what the planner knows about the whole change set before it lowers any change (what is
//! created, replaced or dropped, in which order tables and views are created and dropped), and the
//! questions the lowering asks it (does this table exist before the plan, is this index built after
//! the transaction, …).

use std::collections::{BTreeMap, BTreeSet};

use super::options::PlanOptions;
use super::{order, render};
use crate::change::Change;
use crate::model::{ConstraintKind, Model, QualName, TableKind};

/// What the planner knows about the whole change set.
pub(super) struct Ctx<'a> {
    pub(super) cur: &'a Model,
    pub(super) des: &'a Model,
    pub(super) opts: &'a PlanOptions,
    /// Tables created by the plan (new or replaced).
    pub(super) created_tables: BTreeSet<QualName>,
    /// Tables dropped and created again.
    pub(super) replaced_tables: BTreeSet<QualName>,
    /// Tables dropped for good.
    pub(super) dropped_tables: BTreeSet<QualName>,
    /// Domains created by the plan (new or swapped): functions whose signature names one are
    /// created after the domains.
    pub(super) created_domains: BTreeSet<QualName>,
    /// Views created by the plan (new or recreated).
    pub(super) created_views: BTreeSet<QualName>,
    /// Columns of existing tables dropped (or dropped and re-added).
    pub(super) dropped_columns: BTreeSet<(QualName, String)>,
    /// Tables with a column type change: their changed indexes are dropped inside the transaction.
    pub(super) rewritten_tables: BTreeSet<QualName>,
    /// Tables referenced by foreign keys the plan adds: their new unique indexes are built inside
    /// the transaction, before the foreign keys.
    pub(super) fk_targets: BTreeSet<QualName>,
    /// Relations (tables, views, sequences, indexes, constraint indexes) the plan creates: an index
    /// dropped under one of these names is dropped inside the transaction, before the creation.
    pub(super) created_relations: BTreeSet<QualName>,
    /// Indexes built after the transaction: their comments follow them there.
    pub(super) post_built: BTreeSet<(QualName, String)>,
    /// Tables referenced by a foreign key now: dropping one of their partitions needs a `DETACH`
    /// first (the foreign key depends on each partition).
    pub(super) fk_referenced: BTreeSet<QualName>,
    /// Alphabetical rank of every table, to keep each table's column steps together.
    pub(super) table_rank: BTreeMap<QualName, u32>,
    /// Creation order of created tables (parents first).
    pub(super) create_rank: BTreeMap<QualName, u32>,
    /// Drop order of tables dropped before tables are created (replaced ones and what hangs on them).
    pub(super) early_drops: order::DropOrder,
    /// Drop order of the other dropped tables.
    pub(super) late_drops: order::DropOrder,
    /// Drop order of views (dependents first).
    pub(super) view_drop_rank: BTreeMap<QualName, u32>,
    /// Creation order of created and replaced views (dependencies first).
    pub(super) view_create_rank: BTreeMap<QualName, u32>,
}

impl<'a> Ctx<'a> {
    pub(super) fn new(
        cur: &'a Model,
        des: &'a Model,
        opts: &'a PlanOptions,
        changes: &[&Change],
    ) -> Self {
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
    pub(super) fn existing_table(&self, t: &QualName) -> bool {
        self.cur.tables.contains_key(t) && !self.created_tables.contains(t)
    }

    /// True for a table or materialized view that exists before the plan and is not recreated.
    pub(super) fn existing_relation(&self, r: &QualName) -> bool {
        self.existing_table(r)
            || (self.cur.views.contains_key(r) && !self.created_views.contains(r))
    }

    /// True for a partitioned table (no `CONCURRENTLY`, no `NOT VALID` foreign keys there).
    pub(super) fn partitioned(&self, t: &QualName) -> bool {
        self.des
            .tables
            .get(t)
            .or_else(|| self.cur.tables.get(t))
            .is_some_and(|t| t.kind == TableKind::Partitioned)
    }

    /// True when an index with this definition on `rel` is built `CONCURRENTLY` after the transaction.
    pub(super) fn build_post(&self, rel: &QualName, definition: &str) -> bool {
        self.opts.online
            && self.existing_relation(rel)
            && !self.partitioned(rel)
            && !(render::is_unique_index(definition) && self.fk_targets.contains(rel))
    }

    /// True when index `name` of `rel` is dropped `CONCURRENTLY` after the transaction.
    pub(super) fn drop_post(&self, rel: &QualName, name: &str) -> bool {
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
    pub(super) fn owner_goes_away(&self, owner: &(QualName, String)) -> bool {
        self.dropped_tables.contains(&owner.0)
            || self.replaced_tables.contains(&owner.0)
            || self.dropped_columns.contains(owner)
    }

    /// True when `table` or one of its partition ancestors is referenced by a foreign key now.
    pub(super) fn referenced_with_ancestors(&self, table: &QualName) -> bool {
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

    pub(super) fn table_rank(&self, t: &QualName) -> u32 {
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
