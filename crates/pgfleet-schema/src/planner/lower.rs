//! Lowering: each [`Change`] becomes one or more steps, each placed in a
//! [`Phase`](super::phase::Phase). [`Ctx::lower_all`] hands each change to the module of its kind
//! of object, which holds the rules for that kind (which phase, which hazards, inside or outside
//! the transaction).

mod columns;
mod comments;
mod constraints;
mod extensions;
mod functions;
mod indexes;
mod policies;
mod schemas;
mod sequences;
mod tables;
mod triggers;
mod types;
mod views;

use super::context::Ctx;
use super::phase::Staged;
use crate::change::Change;

impl Ctx<'_> {
    /// Stages the steps of `changes`: first the drops of the foreign keys that tie tables to be
    /// dropped into reference cycles, then the steps of each change, in order.
    pub(super) fn lower_all(&self, changes: &[&Change], out: &mut Staged) {
        self.stage_cycle_breaks(out);
        for change in changes {
            self.lower(change, out);
        }
    }

    /// Stages the steps of one change.
    fn lower(&self, change: &Change, out: &mut Staged) {
        use Change as C;
        match change {
            C::AddSchema { .. } | C::DropSchema { .. } => self.lower_schema(change, out),
            C::AddExtension { .. } | C::AlterExtensionSchema { .. } | C::DropExtension { .. } => {
                self.lower_extension(change, out)
            }
            C::AddEnum { .. }
            | C::AddEnumValue { .. }
            | C::ReplaceEnum { .. }
            | C::DropEnum { .. } => self.lower_enum(change, out),
            C::AddDomain { .. }
            | C::ReplaceDomain { .. }
            | C::AlterDomainDefault { .. }
            | C::AlterDomainNotNull { .. }
            | C::AddDomainCheck { .. }
            | C::DropDomainCheck { .. }
            | C::DropDomain { .. } => self.lower_domain(change, out),
            C::AddSequence { .. }
            | C::AlterSequence { .. }
            | C::AlterSequenceOwner { .. }
            | C::DropSequence { .. } => self.lower_sequence(change, out),
            C::AddFunction { .. }
            | C::AlterFunction { .. }
            | C::RecreateFunction { .. }
            | C::DropFunction { .. } => self.lower_function(change, out),
            C::AddTable { .. }
            | C::ReplaceTable { .. }
            | C::DropTable { .. }
            | C::AlterTableLogged { .. }
            | C::AlterPartitionBound { .. }
            | C::AlterTableRls { .. }
            | C::AlterTableForceRls { .. } => self.lower_table(change, out),
            C::AddColumn { .. }
            | C::ReplaceColumn { .. }
            | C::DropColumn { .. }
            | C::AlterColumnType { .. }
            | C::AlterColumnDefault { .. }
            | C::AlterColumnNotNull { .. }
            | C::AlterColumnIdentity { .. }
            | C::DropColumnExpression { .. } => self.lower_column(change, out),
            C::AddConstraint { .. } | C::ValidateConstraint { .. } | C::DropConstraint { .. } => {
                self.lower_constraint(change, out)
            }
            C::AddIndex { .. } | C::ReplaceIndex { .. } | C::DropIndex { .. } => {
                self.lower_index(change, out)
            }
            C::AddTrigger { .. } | C::AlterTriggerEnabled { .. } | C::DropTrigger { .. } => {
                self.lower_trigger(change, out)
            }
            C::AddPolicy { .. } | C::DropPolicy { .. } => self.lower_policy(change, out),
            C::AddView { .. } | C::ReplaceView { .. } | C::DropView { .. } => {
                self.lower_view(change, out)
            }
            C::AlterComment { .. } => self.lower_comment(change, out),
        }
    }
}
