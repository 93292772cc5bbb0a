//! Builders for hand-made models in unit tests.

use std::collections::BTreeMap;

use crate::model::{
    Column, Constraint, ConstraintKind, Domain, EnumType, Function, FunctionId, Index, Model,
    Namespace, PartitionOf, Policy, QualName, Sequence, Table, TableKind, Trigger, View,
};
use crate::plan::{Plan, Step};

/// `"schema.name"` → [`QualName`] (split at the first dot).
pub(crate) fn qn(s: &str) -> QualName {
    let (schema, name) = s.split_once('.').expect("schema.name");
    QualName::new(schema, name)
}

/// An empty model with the `public` schema.
pub(crate) fn model() -> Model {
    let mut m = Model::default();
    m.schemas.insert("public".into(), Namespace::default());
    m
}

pub(crate) fn col(position: i32, data_type: &str) -> Column {
    Column {
        position,
        data_type: data_type.into(),
        not_null: false,
        default: None,
        collation: None,
        identity: None,
        identity_options: Default::default(),
        generated: None,
        generated_virtual: false,
        comment: None,
    }
}

/// A regular table with the given columns, in order.
pub(crate) fn table(cols: &[(&str, &str)]) -> Table {
    Table {
        kind: TableKind::Regular,
        unlogged: false,
        partition_key: None,
        partition_of: None,
        columns: cols
            .iter()
            .enumerate()
            .map(|(i, (n, t))| (n.to_string(), col(i as i32 + 1, t)))
            .collect(),
        constraints: BTreeMap::new(),
        indexes: BTreeMap::new(),
        triggers: BTreeMap::new(),
        policies: BTreeMap::new(),
        rls_enabled: false,
        rls_forced: false,
        comment: None,
    }
}

pub(crate) fn partitioned(cols: &[(&str, &str)], key: &str) -> Table {
    Table {
        kind: TableKind::Partitioned,
        partition_key: Some(key.into()),
        ..table(cols)
    }
}

pub(crate) fn partition(parent: &str, bound: &str) -> Table {
    Table {
        partition_of: Some(PartitionOf {
            parent: qn(parent),
            bound: bound.into(),
        }),
        ..table(&[])
    }
}

pub(crate) fn constraint(kind: ConstraintKind, definition: &str) -> Constraint {
    Constraint {
        kind,
        definition: definition.into(),
        references: None,
        valid: true,
        comment: None,
    }
}

pub(crate) fn fk(definition: &str, references: &str) -> Constraint {
    Constraint {
        references: Some(qn(references)),
        ..constraint(ConstraintKind::ForeignKey, definition)
    }
}

pub(crate) fn index(definition: &str) -> Index {
    Index {
        definition: definition.into(),
        valid: true,
        comment: None,
    }
}

pub(crate) fn view(definition: &str, cols: &[(&str, &str)], deps: &[&str]) -> View {
    View {
        materialized: false,
        definition: definition.into(),
        columns: cols
            .iter()
            .map(|(n, t)| (n.to_string(), t.to_string()))
            .collect(),
        options: Vec::new(),
        depends_on: deps.iter().map(|d| qn(d)).collect(),
        indexes: BTreeMap::new(),
        comment: None,
    }
}

pub(crate) fn fid(name: &str, args: &str) -> FunctionId {
    FunctionId {
        name: qn(name),
        args: args.into(),
    }
}

pub(crate) fn function(definition: &str, returns: &str) -> Function {
    Function {
        procedure: false,
        returns: Some(returns.into()),
        definition: definition.into(),
        comment: None,
    }
}

pub(crate) fn policy(command: &str, using: &str) -> Policy {
    Policy {
        command: command.into(),
        permissive: true,
        roles: vec!["public".into()],
        using: Some(using.into()),
        with_check: None,
        comment: None,
    }
}

pub(crate) fn trigger(definition: &str) -> Trigger {
    Trigger {
        definition: definition.into(),
        enabled: "O".into(),
        comment: None,
    }
}

pub(crate) fn enum_type(labels: &[&str]) -> EnumType {
    EnumType {
        labels: labels.iter().map(|l| l.to_string()).collect(),
        comment: None,
    }
}

pub(crate) fn domain(base_type: &str) -> Domain {
    Domain {
        base_type: base_type.into(),
        default: None,
        not_null: false,
        collation: None,
        checks: BTreeMap::new(),
        comment: None,
    }
}

pub(crate) fn sequence() -> Sequence {
    Sequence {
        data_type: "bigint".into(),
        start: 1,
        increment: 1,
        min_value: 1,
        max_value: i64::MAX,
        cache: 1,
        cycle: false,
        owned_by: None,
        comment: None,
    }
}

/// The SQL of every step, in order.
pub(crate) fn sqls(plan: &Plan) -> Vec<&str> {
    plan.steps.iter().map(|s| s.sql.as_str()).collect()
}

/// Index of the first step whose SQL contains `needle`; panics with the whole plan otherwise.
pub(crate) fn pos(plan: &Plan, needle: &str) -> usize {
    plan.steps
        .iter()
        .position(|s| s.sql.contains(needle))
        .unwrap_or_else(|| panic!("no step contains {needle:?} in:\n{}", plan.to_sql()))
}

/// The first step whose SQL contains `needle`.
pub(crate) fn step<'p>(plan: &'p Plan, needle: &str) -> &'p Step {
    &plan.steps[pos(plan, needle)]
}
