//! Tables and what hangs on them: columns, constraints, triggers, policies, row-level security flags
//! (their indexes are in `indexes`, shared with materialized views).

use super::compare::{constraint_changed, policy_changed};
use super::differ::Differ;
use super::mentions::mentions;
use crate::change::{Change, CommentTarget};
use crate::model::{Column, ConstraintKind, QualName, Table};

impl Differ<'_> {
    pub(super) fn tables(&mut self) {
        let (cur, des) = (self.cur, self.des);
        for name in cur.tables.keys() {
            if !des.tables.contains_key(name) {
                self.push(Change::DropTable { name: name.clone() });
            }
        }
        for (name, dt) in &des.tables {
            match cur.tables.get(name) {
                None => self.add_table(name, dt, false),
                Some(_) if self.replaced_tables.contains(name) => self.add_table(name, dt, true),
                Some(ct) => self.alter_table(name, ct, dt),
            }
        }
    }

    /// A created (or replaced) table and everything on it.
    fn add_table(&mut self, name: &QualName, dt: &Table, replace: bool) {
        self.push(if replace {
            Change::ReplaceTable {
                name: name.clone(),
                table: dt.clone(),
            }
        } else {
            Change::AddTable {
                name: name.clone(),
                table: dt.clone(),
            }
        });
        self.comment_new(CommentTarget::Table(name.clone()), &dt.comment);
        match &dt.partition_of {
            None => {
                for (col, c) in &dt.columns {
                    self.comment_new(column_target(name, col), &c.comment);
                }
            }
            // `CREATE TABLE … PARTITION OF` takes the parent's columns; columns the partition lists
            // itself are altered from the parent's version.
            Some(p) => {
                let parent = self.des.tables.get(&p.parent);
                for (col, d) in &dt.columns {
                    match parent.and_then(|t| t.columns.get(col)) {
                        Some(pc) => {
                            let inherited = Column {
                                comment: None,
                                ..pc.clone()
                            };
                            self.alter_column(name, col, &inherited, d, false);
                        }
                        None => {
                            self.push(Change::AddColumn {
                                table: name.clone(),
                                column: col.clone(),
                                def: d.clone(),
                            });
                            self.comment_new(column_target(name, col), &d.comment);
                        }
                    }
                }
            }
        }
        for (cn, c) in &dt.constraints {
            self.push(Change::AddConstraint {
                table: name.clone(),
                name: cn.clone(),
                constraint: c.clone(),
            });
            self.comment_new(constraint_target(name, cn), &c.comment);
        }
        self.add_indexes(name, &dt.indexes);
        for (tn, t) in &dt.triggers {
            self.push(Change::AddTrigger {
                table: name.clone(),
                name: tn.clone(),
                trigger: t.clone(),
            });
            self.comment_new(trigger_target(name, tn), &t.comment);
        }
        if dt.rls_enabled {
            self.push(Change::AlterTableRls {
                name: name.clone(),
                enabled: true,
            });
        }
        if dt.rls_forced {
            self.push(Change::AlterTableForceRls {
                name: name.clone(),
                forced: true,
            });
        }
        for (pn, p) in &dt.policies {
            self.push(Change::AddPolicy {
                table: name.clone(),
                name: pn.clone(),
                policy: p.clone(),
            });
            self.comment_new(policy_target(name, pn), &p.comment);
        }
    }

    /// A table on both sides that stays (not replaced).
    fn alter_table(&mut self, name: &QualName, ct: &Table, dt: &Table) {
        if ct.unlogged != dt.unlogged {
            self.push(Change::AlterTableLogged {
                name: name.clone(),
                unlogged: dt.unlogged,
            });
        }
        if let (Some(from), Some(to)) = (&ct.partition_of, &dt.partition_of)
            && from != to
        {
            self.push(Change::AlterPartitionBound {
                name: name.clone(),
                from: from.clone(),
                to: to.clone(),
            });
        }
        self.alter_columns(name, ct, dt);
        self.alter_constraints(name, ct, dt);
        self.alter_indexes(name, &ct.indexes, &dt.indexes);
        self.alter_triggers(name, ct, dt);
        if ct.rls_enabled != dt.rls_enabled {
            self.push(Change::AlterTableRls {
                name: name.clone(),
                enabled: dt.rls_enabled,
            });
        }
        if ct.rls_forced != dt.rls_forced {
            self.push(Change::AlterTableForceRls {
                name: name.clone(),
                forced: dt.rls_forced,
            });
        }
        self.alter_policies(name, ct, dt);
        self.comment_diff(CommentTarget::Table(name.clone()), &ct.comment, &dt.comment);
    }

    fn alter_columns(&mut self, name: &QualName, ct: &Table, dt: &Table) {
        for col in ct.columns.keys() {
            if !dt.columns.contains_key(col) {
                self.push(Change::DropColumn {
                    table: name.clone(),
                    column: col.clone(),
                });
            }
        }
        for (col, d) in &dt.columns {
            let Some(c) = ct.columns.get(col) else {
                self.push(Change::AddColumn {
                    table: name.clone(),
                    column: col.clone(),
                    def: d.clone(),
                });
                self.comment_new(column_target(name, col), &d.comment);
                continue;
            };
            let (replaced, swapped) = match self.columns.get(name) {
                Some(cc) => (cc.replaced.contains(col), cc.swapped.contains_key(col)),
                None => (false, false),
            };
            if replaced {
                self.push(Change::ReplaceColumn {
                    table: name.clone(),
                    column: col.clone(),
                    def: d.clone(),
                });
                self.comment_new(column_target(name, col), &d.comment);
            } else if c != d || swapped {
                self.alter_column(name, col, c, d, swapped);
            }
        }
    }

    /// One column altered in place. `swapped`: its type is swapped, which also resets its default.
    fn alter_column(&mut self, table: &QualName, col: &str, c: &Column, d: &Column, swapped: bool) {
        let t = || table.clone();
        let n = || col.to_string();
        let mut default_dropped = false;
        if c.generated.is_some() && d.generated.is_none() {
            self.push(Change::DropColumnExpression {
                table: t(),
                column: n(),
            });
        }
        if c.data_type != d.data_type || c.collation != d.collation {
            default_dropped = c.default.is_some();
            self.push(Change::AlterColumnType {
                table: t(),
                column: n(),
                data_type: d.data_type.clone(),
                collation: d.collation.clone(),
                drop_default: default_dropped,
            });
        }
        let default_changed = if default_dropped {
            d.default.is_some()
        } else {
            c.default != d.default
        };
        if !swapped && default_changed {
            self.push(Change::AlterColumnDefault {
                table: t(),
                column: n(),
                default: d.default.clone(),
            });
        }
        if c.not_null != d.not_null {
            self.push(Change::AlterColumnNotNull {
                table: t(),
                column: n(),
                not_null: d.not_null,
            });
        }
        let options_changed = d.identity.is_some()
            && (c.identity.is_none() || c.identity_options != d.identity_options);
        if c.identity != d.identity || options_changed {
            self.push(Change::AlterColumnIdentity {
                table: t(),
                column: n(),
                from: c.identity,
                to: d.identity,
                options: d.identity_options.clone(),
                options_changed,
            });
        }
        self.comment_diff(column_target(table, col), &c.comment, &d.comment);
    }

    fn alter_constraints(&mut self, name: &QualName, ct: &Table, dt: &Table) {
        for (cn, c) in &ct.constraints {
            if !dt.constraints.contains_key(cn) {
                self.push(Change::DropConstraint {
                    table: name.clone(),
                    name: cn.clone(),
                    kind: c.kind,
                });
            }
        }
        for (cn, d) in &dt.constraints {
            let target = constraint_target(name, cn);
            let Some(c) = ct.constraints.get(cn) else {
                self.push(Change::AddConstraint {
                    table: name.clone(),
                    name: cn.clone(),
                    constraint: d.clone(),
                });
                self.comment_new(target, &d.comment);
                continue;
            };
            let forced = self.mentions_recreated(name, &c.definition)
                || (c.kind == ConstraintKind::ForeignKey
                    && c.references.as_ref().is_some_and(|r| {
                        self.replaced_tables.contains(r) || self.uniques_changed.contains(r)
                    }));
            if constraint_changed(c, d) || forced {
                self.push(Change::DropConstraint {
                    table: name.clone(),
                    name: cn.clone(),
                    kind: c.kind,
                });
                self.push(Change::AddConstraint {
                    table: name.clone(),
                    name: cn.clone(),
                    constraint: d.clone(),
                });
                self.comment_new(target, &d.comment);
            } else {
                self.comment_diff(target, &c.comment, &d.comment);
                if !c.valid && d.valid {
                    self.push(Change::ValidateConstraint {
                        table: name.clone(),
                        name: cn.clone(),
                    });
                }
            }
        }
    }

    /// True when `text` mentions a column of `table` whose change a policy or trigger blocks.
    fn mentions_blocking(&self, table: &QualName, text: &str) -> bool {
        self.columns
            .get(table)
            .is_some_and(|cc| cc.blocking().any(|c| mentions(text, c)))
    }

    fn alter_triggers(&mut self, name: &QualName, ct: &Table, dt: &Table) {
        for tn in ct.triggers.keys() {
            if !dt.triggers.contains_key(tn) {
                self.push(Change::DropTrigger {
                    table: name.clone(),
                    name: tn.clone(),
                });
            }
        }
        for (tn, d) in &dt.triggers {
            let target = trigger_target(name, tn);
            let Some(c) = ct.triggers.get(tn) else {
                self.push(Change::AddTrigger {
                    table: name.clone(),
                    name: tn.clone(),
                    trigger: d.clone(),
                });
                self.comment_new(target, &d.comment);
                continue;
            };
            if c.definition != d.definition || self.mentions_blocking(name, &c.definition) {
                self.push(Change::DropTrigger {
                    table: name.clone(),
                    name: tn.clone(),
                });
                self.push(Change::AddTrigger {
                    table: name.clone(),
                    name: tn.clone(),
                    trigger: d.clone(),
                });
                self.comment_new(target, &d.comment);
            } else {
                if c.enabled != d.enabled {
                    self.push(Change::AlterTriggerEnabled {
                        table: name.clone(),
                        name: tn.clone(),
                        enabled: d.enabled.clone(),
                    });
                }
                self.comment_diff(target, &c.comment, &d.comment);
            }
        }
    }

    fn alter_policies(&mut self, name: &QualName, ct: &Table, dt: &Table) {
        for pn in ct.policies.keys() {
            if !dt.policies.contains_key(pn) {
                self.push(Change::DropPolicy {
                    table: name.clone(),
                    name: pn.clone(),
                });
            }
        }
        for (pn, d) in &dt.policies {
            let target = policy_target(name, pn);
            let Some(c) = ct.policies.get(pn) else {
                self.push(Change::AddPolicy {
                    table: name.clone(),
                    name: pn.clone(),
                    policy: d.clone(),
                });
                self.comment_new(target, &d.comment);
                continue;
            };
            let blocked = [&c.using, &c.with_check]
                .into_iter()
                .flatten()
                .any(|e| self.mentions_blocking(name, e));
            if policy_changed(c, d) || blocked {
                self.push(Change::DropPolicy {
                    table: name.clone(),
                    name: pn.clone(),
                });
                self.push(Change::AddPolicy {
                    table: name.clone(),
                    name: pn.clone(),
                    policy: d.clone(),
                });
                self.comment_new(target, &d.comment);
            } else {
                self.comment_diff(target, &c.comment, &d.comment);
            }
        }
    }
}

fn column_target(table: &QualName, column: &str) -> CommentTarget {
    CommentTarget::Column {
        table: table.clone(),
        column: column.to_string(),
    }
}

fn constraint_target(table: &QualName, name: &str) -> CommentTarget {
    CommentTarget::Constraint {
        table: table.clone(),
        name: name.to_string(),
    }
}

fn trigger_target(table: &QualName, name: &str) -> CommentTarget {
    CommentTarget::Trigger {
        table: table.clone(),
        name: name.to_string(),
    }
}

fn policy_target(table: &QualName, name: &str) -> CommentTarget {
    CommentTarget::Policy {
        table: table.clone(),
        name: name.to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testing::*;

    #[test]
    fn replacing_a_parent_replaces_its_partitions() {
        let mut cur = model();
        cur.tables
            .insert(qn("public.p"), partitioned(&[("d", "date")], "RANGE (d)"));
        cur.tables
            .insert(qn("public.p1"), partition("public.p", "DEFAULT"));
        let mut des = cur.clone();
        des.tables.get_mut(&qn("public.p")).unwrap().partition_key = Some("LIST (d)".into());
        let changes = super::super::diff(&cur, &des);
        let replaced: Vec<&QualName> = changes
            .iter()
            .filter_map(|c| match c {
                Change::ReplaceTable { name, .. } => Some(name),
                _ => None,
            })
            .collect();
        assert_eq!(replaced, [&qn("public.p"), &qn("public.p1")]);
    }

    #[test]
    fn column_type_change_resets_the_default() {
        let mut cur = model();
        let mut t = table(&[("n", "integer")]);
        t.columns.get_mut("n").unwrap().default = Some("0".into());
        cur.tables.insert(qn("public.t"), t);
        let mut des = cur.clone();
        des.tables
            .get_mut(&qn("public.t"))
            .unwrap()
            .columns
            .get_mut("n")
            .unwrap()
            .data_type = "bigint".into();
        let changes = super::super::diff(&cur, &des);
        assert!(
            matches!(
                &changes[..],
                [
                    Change::AlterColumnType { drop_default: true, .. },
                    Change::AlterColumnDefault { default: Some(d), .. }
                ] if d == "0"
            ),
            "{changes:#?}"
        );
    }
}
