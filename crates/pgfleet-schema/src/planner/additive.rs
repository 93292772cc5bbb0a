//! Additive-only planning ([`super::PlanOptions::additive_only`]): which changes only create
//! something the current model does not have.

use crate::change::{Change, CommentTarget};
use crate::model::{Model, QualName};

/// True for a change that only creates something `current` does not have.
pub(super) fn is_additive(change: &Change, cur: &Model) -> bool {
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
fn comment_target_exists(target: &CommentTarget, cur: &Model) -> bool {
    use CommentTarget as T;
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
