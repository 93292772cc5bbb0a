//! The differ: what changed between two models, as a list of [`Change`]s (verb + object).
//!
//! [`diff`] compares the `current` model (what a database has) with the `desired` one (what it
//! should have) and lists every difference, in a deterministic order. The list is **complete**: it
//! already contains the changes that follow from other changes, so the planner only has to order
//! and render them:
//!
//! - objects that must be recreated because something they depend on is recreated or reshaped
//!   (views over a table whose column type changes; foreign keys into a replaced table or a table
//!   whose primary key or unique constraint is recreated; policies and triggers that mention a
//!   column whose type changes; indexes and constraints on a column that is dropped and re-added);
//! - every sub-object of a created or replaced table (constraints, indexes, triggers, policies,
//!   row-level security flags);
//! - comments: one [`Change::AlterComment`] for every object that is created (or recreated) with a
//!   comment, and for every existing object whose comment changed.
//!
//! A changed object that cannot be altered in place appears as a drop followed by an add of the same
//! name (constraints, triggers, policies, views), or as a `Replace*` variant when the planner needs to
//! know it is a replacement (tables, columns, indexes, enums, domains, functions).
//!
//! Definitions are compared as text: both models are read from PostgreSQL with an empty
//! `search_path`, so PostgreSQL itself has normalized them.

mod tables;
pub(crate) mod views;

use std::collections::{BTreeMap, BTreeSet};

pub use crate::change::{Change, CommentTarget, EnumValuePosition, TypeUse};
use crate::model::{Constraint, ConstraintKind, Index, Model, Policy, QualName, Sequence, View};

/// Compares `current` with `desired` and lists what must change, deterministically.
///
/// Identical models give an empty list. Never fails: anything PostgreSQL can represent in the model
/// has a change that produces it.
pub fn diff(current: &Model, desired: &Model) -> Vec<Change> {
    let mut d = Differ::new(current, desired);
    d.schemas();
    d.extensions();
    d.enums();
    d.domains();
    d.sequences();
    d.functions();
    d.tables();
    d.views();
    d.out
}

/// What happens to the columns of a table that exists on both sides (and is not replaced).
#[derive(Debug, Default)]
pub(crate) struct ColumnChanges {
    /// Columns dropped.
    dropped: BTreeSet<String>,
    /// Columns whose type or collation changes.
    retyped: BTreeSet<String>,
    /// Columns dropped and re-added (generated expression).
    replaced: BTreeSet<String>,
    /// Columns converted by a type swap: column → (type text without `[]`, array).
    swapped: BTreeMap<String, (String, bool)>,
}

impl ColumnChanges {
    fn is_empty(&self) -> bool {
        self.dropped.is_empty()
            && self.retyped.is_empty()
            && self.replaced.is_empty()
            && self.swapped.is_empty()
    }

    /// Columns whose change PostgreSQL refuses while a policy or trigger mentions them.
    fn blocking(&self) -> impl Iterator<Item = &String> {
        self.retyped
            .iter()
            .chain(&self.replaced)
            .chain(self.swapped.keys())
    }
}

/// The differ's state: both models, the output and what was learned about them up front.
pub(crate) struct Differ<'a> {
    cur: &'a Model,
    des: &'a Model,
    out: Vec<Change>,
    /// Tables on both sides that are dropped and created again.
    replaced_tables: BTreeSet<QualName>,
    /// Types swapped (enums and domains), by their `format_type` text.
    swapped_types: BTreeSet<String>,
    /// Column changes of tables on both sides, only for tables with any.
    columns: BTreeMap<QualName, ColumnChanges>,
    /// Tables whose primary key or unique constraints are dropped or recreated: foreign keys that
    /// reference them are recreated too.
    uniques_changed: BTreeSet<QualName>,
    /// Relations whose dependent views must be dropped and created again.
    reshaped: BTreeSet<QualName>,
}

impl<'a> Differ<'a> {
    fn new(cur: &'a Model, des: &'a Model) -> Self {
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

    fn push(&mut self, change: Change) {
        self.out.push(change);
    }

    /// Comment on a created object: only when it has one.
    fn comment_new(&mut self, target: CommentTarget, comment: &Option<String>) {
        if comment.is_some() {
            self.push(Change::AlterComment {
                target,
                comment: comment.clone(),
            });
        }
    }

    /// Comment on an existing object: only when it changed.
    fn comment_diff(&mut self, target: CommentTarget, cur: &Option<String>, des: &Option<String>) {
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
    fn swapped_type_of(&self, data_type: &str) -> Option<(String, bool)> {
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
    fn mentions_recreated(&self, table: &QualName, text: &str) -> bool {
        self.columns.get(table).is_some_and(|cc| {
            cc.replaced
                .iter()
                .chain(cc.swapped.keys())
                .any(|c| mentions(text, c))
        })
    }

    /// True when `text` mentions a column of `table` whose change a policy or trigger blocks.
    fn mentions_blocking(&self, table: &QualName, text: &str) -> bool {
        self.columns
            .get(table)
            .is_some_and(|cc| cc.blocking().any(|c| mentions(text, c)))
    }

    /// Columns of existing tables that keep using the swapped type `type_text`.
    fn type_uses(&self, type_text: &str) -> Vec<TypeUse> {
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

    fn schemas(&mut self) {
        for name in self.cur.schemas.keys() {
            if !self.des.schemas.contains_key(name) {
                self.push(Change::DropSchema { name: name.clone() });
            }
        }
        for (name, ds) in &self.des.schemas {
            match self.cur.schemas.get(name) {
                None => {
                    self.push(Change::AddSchema { name: name.clone() });
                    self.comment_new(CommentTarget::Schema(name.clone()), &ds.comment);
                }
                Some(cs) => self.comment_diff(
                    CommentTarget::Schema(name.clone()),
                    &cs.comment,
                    &ds.comment,
                ),
            }
        }
    }

    fn extensions(&mut self) {
        for name in self.cur.extensions.keys() {
            if !self.des.extensions.contains_key(name) {
                self.push(Change::DropExtension { name: name.clone() });
            }
        }
        for (name, de) in &self.des.extensions {
            let target = CommentTarget::Extension(name.clone());
            match self.cur.extensions.get(name) {
                None => {
                    self.push(Change::AddExtension {
                        name: name.clone(),
                        schema: de.schema.clone(),
                    });
                    self.comment_new(target, &de.comment);
                }
                Some(ce) => {
                    if ce.schema != de.schema {
                        self.push(Change::AlterExtensionSchema {
                            name: name.clone(),
                            schema: de.schema.clone(),
                        });
                    }
                    self.comment_diff(target, &ce.comment, &de.comment);
                }
            }
        }
    }

    fn enums(&mut self) {
        for name in self.cur.enums.keys() {
            if !self.des.enums.contains_key(name) {
                self.push(Change::DropEnum { name: name.clone() });
            }
        }
        for (name, de) in &self.des.enums {
            let target = CommentTarget::Type(name.clone());
            let Some(ce) = self.cur.enums.get(name) else {
                self.push(Change::AddEnum {
                    name: name.clone(),
                    labels: de.labels.clone(),
                });
                self.comment_new(target, &de.comment);
                continue;
            };
            if ce.labels == de.labels {
                self.comment_diff(target, &ce.comment, &de.comment);
            } else if is_subsequence(&ce.labels, &de.labels) {
                let have: BTreeSet<&String> = ce.labels.iter().collect();
                for (i, label) in de.labels.iter().enumerate() {
                    if have.contains(label) {
                        continue;
                    }
                    let position = if i > 0 {
                        EnumValuePosition::After(de.labels[i - 1].clone())
                    } else if let Some(first) = ce.labels.first() {
                        EnumValuePosition::Before(first.clone())
                    } else {
                        EnumValuePosition::End
                    };
                    self.push(Change::AddEnumValue {
                        name: name.clone(),
                        label: label.clone(),
                        position,
                    });
                }
                self.comment_diff(target, &ce.comment, &de.comment);
            } else {
                let keep: BTreeSet<&String> = de.labels.iter().collect();
                let uses = self.type_uses(&name.to_string());
                self.push(Change::ReplaceEnum {
                    name: name.clone(),
                    labels: de.labels.clone(),
                    removed: ce
                        .labels
                        .iter()
                        .filter(|l| !keep.contains(l))
                        .cloned()
                        .collect(),
                    uses,
                });
                self.comment_new(target, &de.comment);
            }
        }
    }

    fn domains(&mut self) {
        for name in self.cur.domains.keys() {
            if !self.des.domains.contains_key(name) {
                self.push(Change::DropDomain { name: name.clone() });
            }
        }
        for (name, dd) in &self.des.domains {
            let target = CommentTarget::Domain(name.clone());
            let Some(cd) = self.cur.domains.get(name) else {
                self.push(Change::AddDomain {
                    name: name.clone(),
                    domain: dd.clone(),
                });
                self.comment_new(target, &dd.comment);
                continue;
            };
            if cd.base_type != dd.base_type || cd.collation != dd.collation {
                let uses = self.type_uses(&name.to_string());
                self.push(Change::ReplaceDomain {
                    name: name.clone(),
                    domain: dd.clone(),
                    uses,
                });
                self.comment_new(target, &dd.comment);
                continue;
            }
            if cd.default != dd.default {
                self.push(Change::AlterDomainDefault {
                    name: name.clone(),
                    default: dd.default.clone(),
                });
            }
            if cd.not_null != dd.not_null {
                self.push(Change::AlterDomainNotNull {
                    name: name.clone(),
                    not_null: dd.not_null,
                });
            }
            for check in cd.checks.keys() {
                if !dd.checks.contains_key(check) {
                    self.push(Change::DropDomainCheck {
                        name: name.clone(),
                        check: check.clone(),
                    });
                }
            }
            for (check, def) in &dd.checks {
                let changed = match cd.checks.get(check) {
                    None => true,
                    Some(cur) if cur != def => {
                        self.push(Change::DropDomainCheck {
                            name: name.clone(),
                            check: check.clone(),
                        });
                        true
                    }
                    Some(_) => false,
                };
                if changed {
                    self.push(Change::AddDomainCheck {
                        name: name.clone(),
                        check: check.clone(),
                        definition: def.clone(),
                    });
                }
            }
            self.comment_diff(target, &cd.comment, &dd.comment);
        }
    }

    /// True when the table or column that owns a sequence now is dropped with its table or column.
    fn owner_goes_away(&self, owner: &(QualName, String)) -> bool {
        let (table, column) = owner;
        self.replaced_tables.contains(table)
            || !self.des.tables.contains_key(table)
            || self
                .columns
                .get(table)
                .is_some_and(|cc| cc.dropped.contains(column) || cc.replaced.contains(column))
    }

    fn sequences(&mut self) {
        for name in self.cur.sequences.keys() {
            if !self.des.sequences.contains_key(name) {
                self.push(Change::DropSequence { name: name.clone() });
            }
        }
        for (name, ds) in &self.des.sequences {
            let target = CommentTarget::Sequence(name.clone());
            let Some(cs) = self.cur.sequences.get(name) else {
                self.push(Change::AddSequence {
                    name: name.clone(),
                    sequence: ds.clone(),
                });
                if ds.owned_by.is_some() {
                    self.push(Change::AlterSequenceOwner {
                        name: name.clone(),
                        owned_by: ds.owned_by.clone(),
                    });
                }
                self.comment_new(target, &ds.comment);
                continue;
            };
            if !same_sequence_options(cs, ds) {
                self.push(Change::AlterSequence {
                    name: name.clone(),
                    sequence: ds.clone(),
                });
            }
            if cs.owned_by != ds.owned_by
                || cs
                    .owned_by
                    .as_ref()
                    .is_some_and(|o| self.owner_goes_away(o))
            {
                self.push(Change::AlterSequenceOwner {
                    name: name.clone(),
                    owned_by: ds.owned_by.clone(),
                });
            }
            self.comment_diff(target, &cs.comment, &ds.comment);
        }
    }

    fn functions(&mut self) {
        for (id, cf) in &self.cur.functions {
            if !self.des.functions.contains_key(id) {
                self.push(Change::DropFunction {
                    id: id.clone(),
                    procedure: cf.procedure,
                });
            }
        }
        for (id, df) in &self.des.functions {
            let target = if df.procedure {
                CommentTarget::Procedure(id.clone())
            } else {
                CommentTarget::Function(id.clone())
            };
            match self.cur.functions.get(id) {
                None => {
                    self.push(Change::AddFunction {
                        id: id.clone(),
                        function: df.clone(),
                    });
                    self.comment_new(target, &df.comment);
                }
                Some(cf) if cf.procedure != df.procedure || cf.returns != df.returns => {
                    self.push(Change::RecreateFunction {
                        id: id.clone(),
                        was_procedure: cf.procedure,
                        function: df.clone(),
                    });
                    self.comment_new(target, &df.comment);
                }
                Some(cf) => {
                    if cf.definition != df.definition {
                        self.push(Change::AlterFunction {
                            id: id.clone(),
                            function: df.clone(),
                        });
                    }
                    self.comment_diff(target, &cf.comment, &df.comment);
                }
            }
        }
    }
}

/// True when every label of `cur` appears in `des`, in the same order.
fn is_subsequence(cur: &[String], des: &[String]) -> bool {
    let mut it = des.iter();
    cur.iter().all(|c| it.any(|d| d == c))
}

fn same_sequence_options(a: &Sequence, b: &Sequence) -> bool {
    a.data_type == b.data_type
        && a.start == b.start
        && a.increment == b.increment
        && a.min_value == b.min_value
        && a.max_value == b.max_value
        && a.cache == b.cache
        && a.cycle == b.cycle
}

/// True when a constraint must be dropped and added again (comment and validity aside).
fn constraint_changed(c: &Constraint, d: &Constraint) -> bool {
    c.kind != d.kind || c.definition != d.definition
}

/// True when an index must be rebuilt: its definition changed, or it is invalid and should not be.
fn index_changed(c: &Index, d: &Index) -> bool {
    c.definition != d.definition || (!c.valid && d.valid)
}

/// True when a policy must be dropped and created again (comment aside).
fn policy_changed(c: &Policy, d: &Policy) -> bool {
    c.command != d.command
        || c.permissive != d.permissive
        || c.roles != d.roles
        || c.using != d.using
        || c.with_check != d.with_check
}

/// True when a view must be recreated or replaced (comment and indexes aside).
fn view_changed(c: &View, d: &View) -> bool {
    c.materialized != d.materialized
        || c.definition != d.definition
        || c.columns != d.columns
        || c.options != d.options
}

/// True when definition text `text` (printed by PostgreSQL) mentions column `column` as a whole
/// identifier. A heuristic without a parser: a false positive only recreates an object needlessly.
pub(crate) fn mentions(text: &str, column: &str) -> bool {
    let quoted = crate::quote::ident(column);
    if quoted.starts_with('"') {
        if text.contains(&quoted) {
            return true;
        }
        // PostgreSQL leaves some key words unquoted that pgfleet quotes.
        let plain = column
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_')
            && column
                .chars()
                .next()
                .is_some_and(|c| c.is_ascii_lowercase() || c == '_');
        return plain && contains_word(text, column);
    }
    contains_word(text, column)
}

fn contains_word(text: &str, word: &str) -> bool {
    let is_ident = |c: char| c.is_alphanumeric() || c == '_' || c == '$' || c == '"';
    text.match_indices(word).any(|(i, _)| {
        let before = text[..i].chars().next_back();
        let after = text[i + word.len()..].chars().next();
        !before.is_some_and(is_ident) && !after.is_some_and(is_ident)
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mentions_whole_identifiers() {
        assert!(mentions(
            "CREATE INDEX i ON public.t USING btree (a, b)",
            "b"
        ));
        assert!(!mentions(
            "CREATE INDEX i ON public.t USING btree (ab)",
            "b"
        ));
        assert!(mentions("CHECK ((\"My Col\" > 0))", "My Col"));
        assert!(mentions("(position > 0)", "position"));
        assert!(!mentions("(\"x\"\"y\" > 0)", "y"));
    }

    #[test]
    fn subsequences() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        assert!(is_subsequence(&s(&["a", "c"]), &s(&["a", "b", "c"])));
        assert!(!is_subsequence(&s(&["c", "a"]), &s(&["a", "b", "c"])));
        assert!(!is_subsequence(&s(&["a", "d"]), &s(&["a", "b", "c"])));
        assert!(is_subsequence(&s(&[]), &s(&["a"])));
    }
}
