//! The extensions a fleet's target creates: created by the server's admin, never by the owner role
//! that runs the migrations.
//!
//! pgvector (and most extensions) are untrusted: only a superuser may create them, and only an
//! extension's owner may comment on it. So before the target's migrations run as the fleet's owner
//! role ([`crate::owner`]), the admin creates every extension the migrations create (with their
//! `SCHEMA`, `VERSION` and `CASCADE`) and runs their `COMMENT ON EXTENSION` statements; the
//! migrations then run with `MigrateOptions::extensions_created`, so their own `CREATE EXTENSION`
//! runs as `IF NOT EXISTS` and their comments are skipped. Which extensions a target may create at
//! all was decided when it was recorded: its replay in the sandboxed shadow database allows the
//! untrusted ones of `Config::allowed_extensions` (and `vector`).

use pgfleet_pg::extensions::{self, CommentOnExtension, CreateExtension};
use tokio_postgres::Client;

use crate::catalog::Target;
use crate::{ControlError, q};

/// The `CREATE EXTENSION` statements of the target, the first of each extension.
pub(crate) fn created(target: &Target) -> Vec<CreateExtension> {
    let mut out: Vec<CreateExtension> = Vec::new();
    for m in &target.dir.migrations {
        for e in extensions::created_extensions(&m.sql) {
            if !out.iter().any(|o| o.name == e.name) {
                out.push(e);
            }
        }
    }
    out
}

/// The `COMMENT ON EXTENSION` statements of the target, in order.
fn comments(target: &Target) -> Vec<CommentOnExtension> {
    target
        .dir
        .migrations
        .iter()
        .flat_map(|m| m.statements())
        .filter_map(|s| extensions::parse_comment_on_extension(s.text))
        .collect()
}

/// The target's extensions missing in the database of `conn` (any role may ask).
pub(crate) async fn missing(conn: &Client, target: &Target) -> Result<Vec<String>, ControlError> {
    let wanted: Vec<String> = created(target).into_iter().map(|e| e.name).collect();
    if wanted.is_empty() {
        return Ok(Vec::new());
    }
    let rows = conn
        .query(
            "SELECT w FROM unnest($1::text[]) AS w
             WHERE NOT EXISTS (SELECT FROM pg_catalog.pg_extension e WHERE e.extname = w)",
            &[&wanted],
        )
        .await
        .map_err(q("looking up the target's extensions"))?;
    Ok(rows.iter().map(|r| r.get(0)).collect())
}

/// Creates, as the admin on `in_db`, the target's extensions that are missing there, and runs the
/// target's comments on them. `schema`: where to create them (`None`: where the statement says,
/// else `public`, where the migrations would have created them: the admin's own `search_path` is
/// `pg_catalog`).
pub(crate) async fn create(
    in_db: &Client,
    target: &Target,
    schema: Option<&str>,
) -> Result<(), ControlError> {
    let missing = missing(in_db, target).await?;
    let mut sql = String::new();
    for mut e in created(target) {
        if missing.contains(&e.name) {
            match schema {
                Some(s) => e.schema = Some(s.to_string()),
                None => {
                    e.schema.get_or_insert_with(|| "public".to_string());
                }
            }
            sql.push_str(&e.to_sql());
            sql.push_str(";\n");
        }
    }
    if !missing.is_empty() {
        for c in comments(target) {
            sql.push_str(&c.to_sql());
            sql.push_str(";\n");
        }
    }
    if sql.is_empty() {
        return Ok(());
    }
    in_db
        .batch_execute(&format!("BEGIN;\n{sql}COMMIT;"))
        .await
        .map_err(|e| {
            let _ = in_db;
            pgfleet_pg::PgError::query(
                format!("creating the target's extensions ({})", missing.join(", ")),
                e,
            )
        })?;
    Ok(())
}
