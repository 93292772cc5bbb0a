//! Introspection: reads a live database's schema into a [`Model`]. Placeholder: being written.

use pgfleet_schema::Model;

use crate::Result;

/// Reads the schema of the database `client` is connected to.
///
/// # Errors
/// When a catalog query fails.
pub async fn introspect(client: &tokio_postgres::Client) -> Result<Model> {
    let _ = client;
    Ok(Model::default())
}
