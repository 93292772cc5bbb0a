//! The differ's state: both models, the changes listed so far, and what it learns about the two
//! models before it lists any change (tables that are replaced, types that are swapped, columns
//! that change, tables whose unique keys change). What it learns decides what else must be
//! recreated; the modules named after object kinds list the changes themselves.

use std::collections::{BTreeMap, BTreeSet};

use super::compare::{constraint_changed, is_subsequence};
use super::mentions::mentions;
use crate::change::{Change, CommentTarget, TypeUse};
use crate::model::{ConstraintKind, Model, QualName};

/// What happens to the columns of a table that exists on both sides (and is not replaced).
#[derive(Debug, Default)]
pub(super) struct ColumnChanges {
    /// Columns dropped.
    pub(super) dropped: BTreeSet<String>,
    /// Columns whose type or collation changes.
    pub(super) retyped: BTreeSet<String>,
    /// Columns dropped and re-added (generated expression).
    pub(super) replaced: BTreeSet<String>,
    /// Columns converted by a type swap: column → (type text without `[]`, array).
    pub(super) swapped: BTreeMap<String, (String, bool)>,
}

impl ColumnChanges {
    fn is_empty(&self) -> bool {
        self.dropped.is_empty()
            && self.retyped.is_empty()
            && self.replaced.is_empty()
            && self.swapped.is_empty()
    }

    /// Columns whose change PostgreSQL refuses while a policy or trigger mentions them.
    pub(super) fn blocking(&self) -> impl Iterator<Item = &String> {
        self.retyped
            .iter()
            .chain(&self.replaced)
            .chain(self.swapped.keys())
    }
}

/// The differ's state: both models, the output and what was learned about them up front.
pub(super) struct Differ<'a> {
    /// The model of what the database has.
    pub(super) cur: &'a Model,
    /// The model of what it should have.
    pub(super) des: &'a Model,
    /// The changes listed so far, in order.
    pub(super) out: Vec<Change>,
    /// Tables on both sides that are dropped and created again.
    pub(super) replaced_tables: BTreeSet<QualName>,
    /// Types swapped (enums and domains), by their `format_type` text.
    pub(super) swapped_types: BTreeSet<String>,
    /// Column changes of tables on both sides, only for tables with any.
    pub(super) columns: BTreeMap<QualName, ColumnChanges>,
    /// Tables whose primary key or unique constraints are dropped or recreated: foreign keys that
    /// reference them are recreated too.
    pub(super) uniques_changed: BTreeSet<QualName>,
    /// Relations whose dependent views must be dropped and created again.
    pub(super) reshaped: BTreeSet<QualName>,
}

impl<'a> Differ<'a> {
    pub(super) fn new(cur: &'a Model, des: &'a Model) -> Self {
        let mut d = Differ {
            cur,
            des,
            out: Vec::new(),
            replaced_tables: BTreeSet::new(),
            swapped_types: BTreeSet::new(),
            columns: BTreeMap::new(),
            uniques_changed: BTreeSet::new(),
            reshaped: BTreeSet::new(),
        };
        d.find_replaced_tables();
        d.find_swapped_types();
        d.find_column_changes();
        d.find_uniques_changed();
        d.reshaped = d
            .columns
            .keys()
            .chain(&d.replaced_tables)
            .chain(cur.tables.keys().filter(|t| !des.tables.contains_key(*t)))
            .cloned()
            .collect();
        d
    }

    pub(super) fn push(&mut self, change: Change) {
        self.out.push(change);
    }

    /// Comment on a created object: only when it has one.
    pub(super) fn comment_new(&mut self, target: CommentTarget, comment: &Option<String>) {
        if comment.is_some() {
            self.push(Change::AlterComment {
                target,
                comment: comment.clone(),
            });
        }
    }

    /// Comment on an existing object: only when it changed.
    pub(super) fn comment_diff(
        &mut self,
        target: CommentTarget,
        cur: &Option<String>,
        des: &Option<String>,
    ) {
        if cur != des {
            self.push(Change::AlterComment {
                target,
                comment: des.clone(),
            });
        }
    }

    /// Tables whose kind, partition key or partition status changed, plus (transitively) the
    /// partitions of those: dropping a partitioned table drops its partitions.
    fn find_replaced_tables(&mut self) {
        for (name, ct) in &self.cur.tables {
            let Some(dt) = self.des.tables.get(name) else {
                continue;
            };
            if ct.kind != dt.kind
                || ct.partition_key != dt.partition_key
                || ct.partition_of.is_some() != dt.partition_of.is_some()
            {
                self.replaced_tables.insert(name.clone());
            }
        }
        loop {
            let more: Vec<QualName> = self
                .cur
                .tables
                .iter()
                .filter(|(name, t)| {
                    !self.replaced_tables.contains(*name)
                        && self.des.tables.contains_key(*name)
                        && t.partition_of
                            .as_ref()
                            .is_some_and(|p| self.replaced_tables.contains(&p.parent))
                })
                .map(|(name, _)| name.clone())
                .collect();
            if more.is_empty() {
                break;
            }
            self.replaced_tables.extend(more);
        }
    }

    /// Enums whose labels cannot be reached by adding labels, domains whose base type or collation
    /// changed.
    fn find_swapped_types(&mut self) {
        for (name, ce) in &self.cur.enums {
            if let Some(de) = self.des.enums.get(name)
                && ce.labels != de.labels
                && !is_subsequence(&ce.labels, &de.labels)
            {
                self.swapped_types.insert(name.to_string());
            }
        }
        for (name, cd) in &self.cur.domains {
            if let Some(dd) = self.des.domains.get(name)
                && (cd.base_type != dd.base_type || cd.collation != dd.collation)
            {
                self.swapped_types.insert(name.to_string());
            }
        }
    }

    /// The swapped type a column type text names, and whether it is an array of it.
    pub(super) fn swapped_type_of(&self, data_type: &str) -> Option<(String, bool)> {
        if self.swapped_types.is_empty() {
            return None;
        }
        let (base, array) = match data_type.strip_suffix("[]") {
            Some(base) => (base, true),
            None => (data_type, false),
        };
        self.swapped_types
            .contains(base)
            .then(|| (base.to_string(), array))
    }

    fn find_column_changes(&mut self) {
        for (name, ct) in &self.cur.tables {
            let Some(dt) = self.des.tables.get(name) else {
                continue;
            };
            if self.replaced_tables.contains(name) {
                continue;
            }
            let mut cc = ColumnChanges::default();
            for (col, c) in &ct.columns {
                let Some(d) = dt.columns.get(col) else {
                    cc.dropped.insert(col.clone());
                    continue;
                };
                if d.generated.is_some()
                    && (c.generated != d.generated || c.generated_virtual != d.generated_virtual)
                {
                    cc.replaced.insert(col.clone());
                } else if c.data_type != d.data_type || c.collation != d.collation {
                    cc.retyped.insert(col.clone());
                } else if let Some(t) = self.swapped_type_of(&c.data_type) {
                    cc.swapped.insert(col.clone(), t);
                }
            }
            // A stored generated column that reads a column whose type changes (or that is dropped and
            // re-added) blocks that change: drop and re-add it too.
            let blocking: Vec<String> = cc.blocking().cloned().collect();
            if !blocking.is_empty() {
                for (col, d) in &dt.columns {
                    if let Some(expr) = &d.generated
                        && ct.columns.contains_key(col)
                        && !cc.replaced.contains(col)
                        && blocking.iter().any(|b| b != col && mentions(expr, b))
                    {
                        cc.retyped.remove(col);
                        cc.swapped.remove(col);
                        cc.replaced.insert(col.clone());
                    }
                }
            }
            if !cc.is_empty() {
                self.columns.insert(name.clone(), cc);
            }
        }
    }

    fn find_uniques_changed(&mut self) {
        for (name, ct) in &self.cur.tables {
            let Some(dt) = self.des.tables.get(name) else {
                continue;
            };
            if self.replaced_tables.contains(name) {
                continue;
            }
            let changed = ct.constraints.iter().any(|(cn, c)| {
                matches!(c.kind, ConstraintKind::PrimaryKey | ConstraintKind::Unique)
                    && match dt.constraints.get(cn) {
                        None => true,
                        Some(d) => {
                            constraint_changed(c, d) || self.mentions_recreated(name, &c.definition)
                        }
                    }
            });
            if changed {
                self.uniques_changed.insert(name.clone());
            }
        }
    }

    /// True when `text` (an index or constraint definition) mentions a column of `table` that is
    /// dropped and re-added (which drops the index or constraint with it), or whose type is swapped
    /// (PostgreSQL would rebuild it from text naming the old type, and fail).
    pub(super) fn mentions_recreated(&self, table: &QualName, text: &str) -> bool {
        self.columns.get(table).is_some_and(|cc| {
            cc.replaced
                .iter()
                .chain(cc.swapped.keys())
                .any(|c| mentions(text, c))
        })
    }

    /// Columns of existing tables that keep using the swapped type `type_text`.
    pub(super) fn type_uses(&self, type_text: &str) -> Vec<TypeUse> {
        let mut uses = Vec::new();
        for (table, cc) in &self.columns {
            for (col, (t, array)) in &cc.swapped {
                if t != type_text {
                    continue;
                }
                let cur = &self.cur.tables[table].columns[col];
                let des = &self.des.tables[table].columns[col];
                uses.push(TypeUse {
                    table: table.clone(),
                    column: col.clone(),
                    array: *array,
                    drop_default: cur.default.is_some(),
                    default: des.default.clone(),
                    generated: des.generated.is_some(),
                });
            }
        }
        uses
    }
}
