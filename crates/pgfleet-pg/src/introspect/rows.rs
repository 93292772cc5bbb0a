//! Running one catalog query of introspection and reading typed columns of its rows, with errors
//! that name the object kind and the column.

use pgfleet_schema::QualName;
use tokio_postgres::Row;
use tokio_postgres::types::FromSql;

use crate::error::{PgError, Result};

/// Runs one catalog query; `what` names the object kind for the error.
pub(super) async fn fetch(
    client: &tokio_postgres::Client,
    what: &str,
    sql: &str,
) -> Result<Vec<Row>> {
    client
        .query(sql, &[])
        .await
        .map_err(|e| PgError::query(format!("introspection: reading {what}"), e))
}

/// One typed column of a catalog row.
pub(super) fn get<'a, T: FromSql<'a>>(row: &'a Row, what: &str, column: &str) -> Result<T> {
    row.try_get(column).map_err(|e| {
        PgError::query(
            format!("introspection: reading column {column:?} of {what}"),
            e,
        )
    })
}

/// `schema` and `name` columns as a qualified name.
pub(super) fn qual_name(row: &Row, what: &str, schema: &str, name: &str) -> Result<QualName> {
    Ok(QualName::new(
        get::<String>(row, what, schema)?,
        get::<String>(row, what, name)?,
    ))
}

/// Pairs two parallel arrays of one row (built by two `array_agg`s with the same `ORDER BY`).
pub(super) fn zip_arrays(
    row: &Row,
    what: &str,
    left: &str,
    right: &str,
) -> Result<Vec<(String, String)>> {
    let l: Vec<String> = get(row, what, left)?;
    let r: Vec<String> = get(row, what, right)?;
    if l.len() != r.len() {
        return Err(PgError::Catalog(format!(
            "{what}: {left} and {right} differ in length ({} and {})",
            l.len(),
            r.len()
        )));
    }
    Ok(l.into_iter().zip(r).collect())
}
