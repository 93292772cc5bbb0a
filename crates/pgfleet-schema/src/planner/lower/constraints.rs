//! Table constraints: dropped early (foreign keys first), added after the tables and columns (primary
//! keys, unique, exclusion, checks, then foreign keys); on an existing table a check or foreign key is
//! added `NOT VALID` and validated after the transaction when planning online (not on a partitioned
//! table).

use crate::change::Change;
use crate::model::{ConstraintKind, QualName};
use crate::plan::Hazard;
use crate::planner::context::Ctx;
use crate::planner::phase::{Phase, Staged, solo, tx};
use crate::quote::ident;

use Hazard::{IndexBuild, LongLock, ValidationScan};

impl Ctx<'_> {
    /// The steps of a constraint change.
    pub(super) fn lower_constraint(&self, change: &Change, out: &mut Staged) {
        match change {
            Change::AddConstraint {
                table,
                name,
                constraint,
            } => self.add_constraint(out, table, name, constraint),
            Change::ValidateConstraint { table, name } => self.validate(out, table, name),
            Change::DropConstraint { table, name, kind } => {
                let phase = if *kind == ConstraintKind::ForeignKey {
                    Phase::DropForeignKeys
                } else {
                    Phase::DropConstraints
                };
                out.push(
                    phase,
                    0,
                    0,
                    tx(
                        format!("drop {} {} on {table}", constraint_kind(*kind), ident(name)),
                        format!("ALTER TABLE {table} DROP CONSTRAINT {}", ident(name)),
                        &[],
                    ),
                );
            }
            _ => unreachable!("not a constraint change: {change:?}"),
        }
    }

    fn add_constraint(
        &self,
        out: &mut Staged,
        table: &QualName,
        name: &str,
        c: &crate::model::Constraint,
    ) {
        let (phase, b) = match c.kind {
            ConstraintKind::PrimaryKey => (Phase::AddConstraints, 0),
            ConstraintKind::Unique => (Phase::AddConstraints, 1),
            ConstraintKind::Exclusion => (Phase::AddConstraints, 2),
            ConstraintKind::Check => (Phase::AddConstraints, 3),
            ConstraintKind::ForeignKey => (Phase::AddForeignKeys, 0),
        };
        let sql = format!(
            "ALTER TABLE {table} ADD CONSTRAINT {} {}",
            ident(name),
            c.definition
        );
        let desc = format!("add {} {} on {table}", constraint_kind(c.kind), ident(name));
        let validatable = matches!(c.kind, ConstraintKind::Check | ConstraintKind::ForeignKey);
        let existing = self.existing_table(table);
        let step = if validatable && !c.valid {
            tx(desc, format!("{sql} NOT VALID"), &[])
        } else if !existing {
            tx(desc, sql, &[])
        } else if !validatable {
            tx(desc, sql, &[LongLock, IndexBuild])
        } else if self.opts.online && !self.partitioned(table) {
            self.validate(out, table, name);
            tx(
                format!("{desc} (NOT VALID, validated later)"),
                format!("{sql} NOT VALID"),
                &[],
            )
        } else {
            tx(desc, sql, &[LongLock, ValidationScan])
        };
        out.push(phase, 0, b, step);
    }

    fn validate(&self, out: &mut Staged, table: &QualName, name: &str) {
        let desc = format!("validate constraint {} on {table}", ident(name));
        let sql = format!("ALTER TABLE {table} VALIDATE CONSTRAINT {}", ident(name));
        if self.opts.online {
            out.push(
                Phase::PostValidate,
                0,
                0,
                solo(desc, sql, &[ValidationScan]),
            );
        } else {
            out.push(
                Phase::ValidateConstraints,
                0,
                0,
                tx(desc, sql, &[ValidationScan, LongLock]),
            );
        }
    }
}

fn constraint_kind(kind: ConstraintKind) -> &'static str {
    match kind {
        ConstraintKind::PrimaryKey => "primary key",
        ConstraintKind::Unique => "unique constraint",
        ConstraintKind::Check => "check constraint",
        ConstraintKind::Exclusion => "exclusion constraint",
        ConstraintKind::ForeignKey => "foreign key",
    }
}
