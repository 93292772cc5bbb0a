//! Introspection: reads a live database's schema into a [`Model`].
//!
//! One bulk catalog query per object kind (`src/sql/*.sql`), all inside
//! one `REPEATABLE READ, READ ONLY` transaction so they see one snapshot, with `search_path` empty so
//! `format_type` and the `pg_get_*def` functions print every name schema-qualified. The queries are
//! sent together (pipelined on the one connection); the model is assembled from their rows.
//!
//! Each query reads its objects from a scope prepended to it (`src/sql/scope/`): `database.sql`
//! (every user schema) or `schema.sql` (one schema of a shared database, found through `pg_depend`,
//! so its cost does not grow with the number of schemas beside it). To run one by hand:
//! `cat src/sql/scope/database.sql src/sql/tables.sql | psql`.
//!
//! What is left out, and why, is written at the top of each query: system schemas, everything that
//! belongs to an extension, identity sequences, indexes that implement constraints, partition
//! clones (columns, constraints, indexes, triggers a partition gets from its parent), internal
//! triggers and NOT NULL constraint rows.

mod objects;
mod queries;
mod relations;
mod rows;

use pgfleet_schema::{Model, QualName};

use crate::error::{PgError, Result};
use queries::{DATABASE, Queries, SCHEMA};

/// Opens the snapshot every query reads.
///
/// Besides the empty `search_path`, it pins every setting that changes how PostgreSQL prints a
/// constant (in defaults, checks, index predicates, partition bounds, views): a database or role
/// with its own `TimeZone`, `DateStyle`, `IntervalStyle`, `extra_float_digits` or `bytea_output`
/// would otherwise print the same value differently from the shadow database, and never converge.
const BEGIN: &str = "BEGIN ISOLATION LEVEL REPEATABLE READ, READ ONLY; SET LOCAL search_path = ''; \
     SET LOCAL TimeZone = 'UTC'; SET LOCAL DateStyle = 'ISO, YMD'; SET LOCAL IntervalStyle = 'postgres'; \
     SET LOCAL extra_float_digits = 1; SET LOCAL bytea_output = 'hex'";

/// Reads the schema of the database `client` is connected to.
///
/// Runs its own read-only transaction (`BEGIN … COMMIT`), so `client` must not be inside one, and
/// must not be used for anything else until this returns: the queries are pipelined, and anything
/// sent meanwhile would run inside that transaction. When the returned future is dropped before it
/// finishes, the transaction stays open on the connection; discard the connection then.
///
/// It takes no locks on user tables (unlike `pg_dump`). The `pg_get_*def` functions read the
/// catalog caches, not the snapshot, so DDL committed by others while this runs may show through
/// or fail a query ("cache lookup failed"); run it again.
///
/// # Errors
/// [`PgError::Query`] when a catalog query fails (the context names the object kind being read);
/// [`PgError::Catalog`] when the catalog holds something pgfleet does not understand (an unknown
/// constraint kind, or an object whose table was not read).
pub async fn introspect(client: &tokio_postgres::Client) -> Result<Model> {
    introspect_with(client, BEGIN, &DATABASE).await
}

/// Reads only the objects of `schema` (and the database's extensions): for a tenant that is one
/// schema of a shared database, without reading the other tenants. Same rules as [`introspect`].
///
/// # Errors
/// As [`introspect`].
pub async fn introspect_schema(client: &tokio_postgres::Client, schema: &str) -> Result<Model> {
    let begin = format!(
        "{BEGIN}; SET LOCAL pgfleet.only_schema = {}",
        pgfleet_schema::quote::literal(schema)
    );
    introspect_with(client, &begin, &SCHEMA).await
}

async fn introspect_with(
    client: &tokio_postgres::Client,
    begin: &str,
    queries: &Queries,
) -> Result<Model> {
    client
        .batch_execute(begin)
        .await
        .map_err(|e| PgError::query("introspection: opening a read-only transaction", e))?;
    // The pipelined queries make a large future: box it so callers' futures stay small.
    let result = Box::pin(read_model(client, queries)).await;
    match result {
        Ok(model) => {
            client.batch_execute("COMMIT").await.map_err(|e| {
                PgError::query("introspection: ending the read-only transaction", e)
            })?;
            Ok(model)
        }
        Err(e) => {
            // The first error is the one to report; a failed ROLLBACK means the connection is gone.
            let _ = client.batch_execute("ROLLBACK").await;
            Err(e)
        }
    }
}

/// Runs every query (pipelined) and assembles the model.
async fn read_model(client: &tokio_postgres::Client, q: &Queries) -> Result<Model> {
    let (
        server_version,
        schemas,
        extensions,
        enums,
        domains,
        sequences,
        functions,
        tables,
        columns,
        constraints,
        indexes,
        triggers,
        policies,
        views,
    ) = tokio::try_join!(
        objects::server_version(client),
        objects::schemas(client, q),
        objects::extensions(client),
        objects::enums(client, q),
        objects::domains(client, q),
        objects::sequences(client, q),
        objects::functions(client, q),
        relations::tables(client, q),
        relations::columns(client, q),
        relations::constraints(client, q),
        relations::indexes(client, q),
        relations::triggers(client, q),
        relations::policies(client, q),
        relations::views(client, q),
    )?;

    let mut model = Model {
        server_version,
        schemas: schemas.into_iter().collect(),
        extensions: extensions.into_iter().collect(),
        enums: enums.into_iter().collect(),
        domains: domains.into_iter().collect(),
        sequences: sequences.into_iter().collect(),
        tables: tables.into_iter().collect(),
        views: views.into_iter().collect(),
        functions: functions.into_iter().collect(),
    };
    for (table, name, column) in columns {
        table_part(&mut model, &table, "column", &name)?
            .columns
            .insert(name, column);
    }
    for (table, name, constraint) in constraints {
        table_part(&mut model, &table, "constraint", &name)?
            .constraints
            .insert(name, constraint);
    }
    for (table, name, trigger) in triggers {
        table_part(&mut model, &table, "trigger", &name)?
            .triggers
            .insert(name, trigger);
    }
    for (table, name, policy) in policies {
        table_part(&mut model, &table, "policy", &name)?
            .policies
            .insert(name, policy);
    }
    for (relation, name, index) in indexes {
        let slot = match model.tables.get_mut(&relation) {
            Some(table) => &mut table.indexes,
            None => match model.views.get_mut(&relation) {
                Some(view) if view.materialized => &mut view.indexes,
                _ => return Err(orphan("index", &name, &relation)),
            },
        };
        slot.insert(name, index);
    }
    Ok(model)
}

/// The table a column, constraint, trigger or policy row belongs to.
fn table_part<'m>(
    model: &'m mut Model,
    table: &QualName,
    what: &str,
    name: &str,
) -> Result<&'m mut pgfleet_schema::model::Table> {
    model
        .tables
        .get_mut(table)
        .ok_or_else(|| orphan(what, name, table))
}

/// A row whose relation was not read: the queries' filters disagree (a bug in pgfleet).
fn orphan(what: &str, name: &str, relation: &QualName) -> PgError {
    PgError::Catalog(format!(
        "{what} {name:?} belongs to {relation}, which introspection did not read"
    ))
}
