//! Relations and what hangs off them: tables, columns, constraints, indexes, triggers, policies,
//! views and materialized views. Parts come back keyed by their relation's name; the caller puts
//! them into place.

use std::collections::BTreeMap;

use pgfleet_schema::QualName;
use pgfleet_schema::model::{
    Column, Constraint, ConstraintKind, Identity, IdentityOptions, Index, PartitionOf, Policy,
    Table, TableKind, Trigger, View,
};
use tokio_postgres::Client;

use super::queries::Queries;
use super::rows::{fetch, get, qual_name, zip_arrays};
use crate::error::{PgError, Result};

/// A part of a relation: the relation's name, the part's name, the part.
type Part<T> = (QualName, String, T);

/// Tables, without their parts.
pub(super) async fn tables(client: &Client, q: &Queries) -> Result<Vec<(QualName, Table)>> {
    const WHAT: &str = "tables";
    fetch(client, WHAT, q.tables)
        .await?
        .iter()
        .map(|row| {
            let partitioned: bool = get(row, WHAT, "partitioned")?;
            let partition_of = match get::<Option<String>>(row, WHAT, "partition_bound")? {
                Some(bound) => Some(PartitionOf {
                    parent: qual_name(row, WHAT, "parent_schema", "parent_name")?,
                    bound,
                }),
                None => None,
            };
            Ok((
                qual_name(row, WHAT, "schema", "name")?,
                Table {
                    kind: if partitioned {
                        TableKind::Partitioned
                    } else {
                        TableKind::Regular
                    },
                    unlogged: get(row, WHAT, "unlogged")?,
                    partition_key: get(row, WHAT, "partition_key")?,
                    partition_of,
                    columns: BTreeMap::new(),
                    constraints: BTreeMap::new(),
                    indexes: BTreeMap::new(),
                    triggers: BTreeMap::new(),
                    policies: BTreeMap::new(),
                    rls_enabled: get(row, WHAT, "rls_enabled")?,
                    rls_forced: get(row, WHAT, "rls_forced")?,
                    comment: get(row, WHAT, "comment")?,
                },
            ))
        })
        .collect()
}

/// Table columns.
pub(super) async fn columns(client: &Client, q: &Queries) -> Result<Vec<Part<Column>>> {
    const WHAT: &str = "columns";
    fetch(client, WHAT, q.columns)
        .await?
        .iter()
        .map(|row| {
            let name: String = get(row, WHAT, "name")?;
            let identity = match get::<String>(row, WHAT, "identity")?.as_str() {
                "" => None,
                "a" => Some(Identity::Always),
                "d" => Some(Identity::ByDefault),
                other => {
                    return Err(PgError::Catalog(format!(
                        "column {name:?} has an unknown attidentity {other:?}"
                    )));
                }
            };
            Ok((
                qual_name(row, WHAT, "schema", "table_name")?,
                name,
                Column {
                    position: get(row, WHAT, "position")?,
                    data_type: get(row, WHAT, "data_type")?,
                    not_null: get(row, WHAT, "not_null")?,
                    default: get(row, WHAT, "default")?,
                    collation: get(row, WHAT, "collation")?,
                    identity,
                    identity_options: match get::<Option<i64>>(row, WHAT, "identity_increment")? {
                        Some(increment) => IdentityOptions {
                            increment,
                            start: get(row, WHAT, "identity_start")?,
                            min_value: get(row, WHAT, "identity_min")?,
                            max_value: get(row, WHAT, "identity_max")?,
                            cache: get(row, WHAT, "identity_cache")?,
                            cycle: get(row, WHAT, "identity_cycle")?,
                        },
                        None => IdentityOptions::default(),
                    },
                    generated: get(row, WHAT, "generated")?,
                    generated_virtual: get(row, WHAT, "generated_virtual")?,
                    comment: get(row, WHAT, "comment")?,
                },
            ))
        })
        .collect()
}

/// Table constraints (not NOT NULL).
pub(super) async fn constraints(client: &Client, q: &Queries) -> Result<Vec<Part<Constraint>>> {
    const WHAT: &str = "constraints";
    fetch(client, WHAT, q.constraints)
        .await?
        .iter()
        .map(|row| {
            let name: String = get(row, WHAT, "name")?;
            let kind = match get::<String>(row, WHAT, "kind")?.as_str() {
                "p" => ConstraintKind::PrimaryKey,
                "u" => ConstraintKind::Unique,
                "c" => ConstraintKind::Check,
                "x" => ConstraintKind::Exclusion,
                "f" => ConstraintKind::ForeignKey,
                other => {
                    return Err(PgError::Catalog(format!(
                        "constraint {name:?} has an unknown contype {other:?}"
                    )));
                }
            };
            let definition: String = get(row, WHAT, "definition")?;
            let definition = match definition.strip_suffix(" NOT VALID") {
                Some(stripped) => stripped.to_string(),
                None => definition,
            };
            let references = match get::<Option<String>>(row, WHAT, "ref_name")? {
                Some(_) => Some(qual_name(row, WHAT, "ref_schema", "ref_name")?),
                None => None,
            };
            Ok((
                qual_name(row, WHAT, "schema", "table_name")?,
                name,
                Constraint {
                    kind,
                    definition,
                    references,
                    valid: get(row, WHAT, "valid")?,
                    comment: get(row, WHAT, "comment")?,
                },
            ))
        })
        .collect()
}

/// Indexes of tables and materialized views (not those implementing constraints).
pub(super) async fn indexes(client: &Client, q: &Queries) -> Result<Vec<Part<Index>>> {
    const WHAT: &str = "indexes";
    fetch(client, WHAT, q.indexes)
        .await?
        .iter()
        .map(|row| {
            Ok((
                qual_name(row, WHAT, "schema", "table_name")?,
                get(row, WHAT, "name")?,
                Index {
                    definition: get(row, WHAT, "definition")?,
                    valid: get(row, WHAT, "valid")?,
                    comment: get(row, WHAT, "comment")?,
                },
            ))
        })
        .collect()
}

/// Table triggers (not internal ones, not partition clones).
pub(super) async fn triggers(client: &Client, q: &Queries) -> Result<Vec<Part<Trigger>>> {
    const WHAT: &str = "triggers";
    fetch(client, WHAT, q.triggers)
        .await?
        .iter()
        .map(|row| {
            Ok((
                qual_name(row, WHAT, "schema", "table_name")?,
                get(row, WHAT, "name")?,
                Trigger {
                    definition: get(row, WHAT, "definition")?,
                    enabled: get(row, WHAT, "enabled")?,
                    comment: get(row, WHAT, "comment")?,
                },
            ))
        })
        .collect()
}

/// Row-level security policies.
pub(super) async fn policies(client: &Client, q: &Queries) -> Result<Vec<Part<Policy>>> {
    const WHAT: &str = "policies";
    fetch(client, WHAT, q.policies)
        .await?
        .iter()
        .map(|row| {
            let name: String = get(row, WHAT, "name")?;
            let command = match get::<String>(row, WHAT, "command")?.as_str() {
                "*" => "ALL",
                "r" => "SELECT",
                "a" => "INSERT",
                "w" => "UPDATE",
                "d" => "DELETE",
                other => {
                    return Err(PgError::Catalog(format!(
                        "policy {name:?} has an unknown polcmd {other:?}"
                    )));
                }
            };
            let mut roles: Vec<String> = get(row, WHAT, "roles")?;
            roles.sort();
            Ok((
                qual_name(row, WHAT, "schema", "table_name")?,
                name,
                Policy {
                    command: command.to_string(),
                    permissive: get(row, WHAT, "permissive")?,
                    roles,
                    using: get(row, WHAT, "using_expr")?,
                    with_check: get(row, WHAT, "with_check")?,
                    comment: get(row, WHAT, "comment")?,
                },
            ))
        })
        .collect()
}

/// Views and materialized views, without indexes.
pub(super) async fn views(client: &Client, q: &Queries) -> Result<Vec<(QualName, View)>> {
    const WHAT: &str = "views";
    fetch(client, WHAT, q.views)
        .await?
        .iter()
        .map(|row| {
            let mut options: Vec<String> = get(row, WHAT, "options")?;
            options.sort();
            let mut depends_on: Vec<QualName> = zip_arrays(row, WHAT, "dep_schemas", "dep_names")?
                .into_iter()
                .map(|(schema, name)| QualName { schema, name })
                .collect();
            depends_on.sort();
            depends_on.dedup();
            Ok((
                qual_name(row, WHAT, "schema", "name")?,
                View {
                    materialized: get(row, WHAT, "materialized")?,
                    definition: get(row, WHAT, "definition")?,
                    columns: zip_arrays(row, WHAT, "column_names", "column_types")?,
                    options,
                    depends_on,
                    indexes: BTreeMap::new(),
                    comment: get(row, WHAT, "comment")?,
                },
            ))
        })
        .collect()
}
