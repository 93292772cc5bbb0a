//! Objects that are not relations: schemas, extensions, enums, domains, sequences, functions.

use pgfleet_schema::QualName;
use pgfleet_schema::model::{
    Domain, EnumType, Extension, Function, FunctionId, Namespace, Sequence,
};
use tokio_postgres::Client;

use super::queries::Queries;
use super::rows::{fetch, get, qual_name, zip_arrays};
use crate::error::{PgError, Result};

/// `server_version_num`, e.g. 180006.
pub(super) async fn server_version(client: &Client) -> Result<u32> {
    const WHAT: &str = "the server version";
    let rows = fetch(client, WHAT, include_str!("../sql/server_version.sql")).await?;
    let row = rows
        .first()
        .ok_or_else(|| PgError::Catalog(format!("{WHAT}: no row")))?;
    let num: i32 = get(row, WHAT, "server_version_num")?;
    u32::try_from(num).map_err(|_| PgError::Catalog(format!("{WHAT}: {num}")))
}

/// User schemas with their comments.
pub(super) async fn schemas(client: &Client, q: &Queries) -> Result<Vec<(String, Namespace)>> {
    const WHAT: &str = "schemas";
    fetch(client, WHAT, q.schemas)
        .await?
        .iter()
        .map(|row| {
            Ok((
                get(row, WHAT, "name")?,
                Namespace {
                    comment: get(row, WHAT, "comment")?,
                },
            ))
        })
        .collect()
}

/// Installed extensions (but `plpgsql`).
pub(super) async fn extensions(client: &Client) -> Result<Vec<(String, Extension)>> {
    const WHAT: &str = "extensions";
    fetch(client, WHAT, include_str!("../sql/extensions.sql"))
        .await?
        .iter()
        .map(|row| {
            Ok((
                get(row, WHAT, "name")?,
                Extension {
                    schema: get(row, WHAT, "schema")?,
                    version: get(row, WHAT, "version")?,
                    comment: get(row, WHAT, "comment")?,
                },
            ))
        })
        .collect()
}

/// Enum types.
pub(super) async fn enums(client: &Client, q: &Queries) -> Result<Vec<(QualName, EnumType)>> {
    const WHAT: &str = "enum types";
    fetch(client, WHAT, q.enums)
        .await?
        .iter()
        .map(|row| {
            Ok((
                qual_name(row, WHAT, "schema", "name")?,
                EnumType {
                    labels: get(row, WHAT, "labels")?,
                    comment: get(row, WHAT, "comment")?,
                },
            ))
        })
        .collect()
}

/// Domains with their CHECK constraints.
pub(super) async fn domains(client: &Client, q: &Queries) -> Result<Vec<(QualName, Domain)>> {
    const WHAT: &str = "domains";
    fetch(client, WHAT, q.domains)
        .await?
        .iter()
        .map(|row| {
            Ok((
                qual_name(row, WHAT, "schema", "name")?,
                Domain {
                    base_type: get(row, WHAT, "base_type")?,
                    default: get(row, WHAT, "default")?,
                    not_null: get(row, WHAT, "not_null")?,
                    collation: get(row, WHAT, "collation")?,
                    checks: zip_arrays(row, WHAT, "check_names", "check_defs")?
                        .into_iter()
                        .collect(),
                    comment: get(row, WHAT, "comment")?,
                },
            ))
        })
        .collect()
}

/// Sequences (not those of identity columns), with the column that owns them.
pub(super) async fn sequences(client: &Client, q: &Queries) -> Result<Vec<(QualName, Sequence)>> {
    const WHAT: &str = "sequences";
    fetch(client, WHAT, q.sequences)
        .await?
        .iter()
        .map(|row| {
            let owned_by = match get::<Option<String>>(row, WHAT, "owner_column")? {
                Some(column) => {
                    Some((qual_name(row, WHAT, "owner_schema", "owner_table")?, column))
                }
                None => None,
            };
            Ok((
                qual_name(row, WHAT, "schema", "name")?,
                Sequence {
                    data_type: get(row, WHAT, "data_type")?,
                    start: get(row, WHAT, "start")?,
                    increment: get(row, WHAT, "increment")?,
                    min_value: get(row, WHAT, "min_value")?,
                    max_value: get(row, WHAT, "max_value")?,
                    cache: get(row, WHAT, "cache")?,
                    cycle: get(row, WHAT, "cycle")?,
                    owned_by,
                    comment: get(row, WHAT, "comment")?,
                },
            ))
        })
        .collect()
}

/// Functions and procedures.
pub(super) async fn functions(client: &Client, q: &Queries) -> Result<Vec<(FunctionId, Function)>> {
    const WHAT: &str = "functions";
    fetch(client, WHAT, q.functions)
        .await?
        .iter()
        .map(|row| {
            Ok((
                FunctionId {
                    name: qual_name(row, WHAT, "schema", "name")?,
                    args: get(row, WHAT, "args")?,
                },
                Function {
                    procedure: get(row, WHAT, "procedure")?,
                    returns: get(row, WHAT, "returns")?,
                    definition: get(row, WHAT, "definition")?,
                    comment: get(row, WHAT, "comment")?,
                },
            ))
        })
        .collect()
}
