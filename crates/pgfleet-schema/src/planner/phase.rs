//! Where steps go: the [`Phase`]s of a plan, in the order they run, and [`Staged`], the steps with
//! their sort keys, sorted into a [`Plan`]. Also the two kinds of step: [`tx`] (inside the
//! transaction) and [`solo`] (on its own, outside any transaction).

use crate::plan::{Hazard, Plan, Step};

/// Where a step goes. Steps sort by phase, then by two ranks inside it, then by the order they
/// were produced in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub(super) enum Phase {
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
pub(super) struct Staged {
    items: Vec<((Phase, u32, u32), Step)>,
}

impl Staged {
    pub(super) fn push(&mut self, phase: Phase, a: u32, b: u32, step: Step) {
        self.items.push(((phase, a, b), step));
    }

    pub(super) fn into_plan(mut self) -> Plan {
        // Stable: steps with equal keys keep the order they were produced in.
        self.items.sort_by_key(|(key, _)| *key);
        Plan {
            steps: self.items.into_iter().map(|(_, s)| s).collect(),
        }
    }
}

/// A step inside the transaction.
pub(super) fn tx(description: String, sql: String, hazards: &[Hazard]) -> Step {
    Step {
        description,
        sql,
        hazards: hazards.to_vec(),
        transactional: true,
    }
}

/// A step that runs on its own, outside any transaction.
pub(super) fn solo(description: String, sql: String, hazards: &[Hazard]) -> Step {
    Step {
        transactional: false,
        ..tx(description, sql, hazards)
    }
}
