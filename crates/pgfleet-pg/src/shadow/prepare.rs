//! What the admin does before the sandbox role runs anything: refuse untrusted extensions that are
//! not allowed, and, in the fresh shadow database, give the role `public` (PostgreSQL 13/14), create
//! the allowed extensions the files create and set the files' comments on them.

use std::path::Path;

use pgfleet_schema::quote;
use tokio_postgres::{Client, Config};

use super::error::{ShadowError, statement_error};
use super::options::ShadowOptions;
use super::sandbox::{Sandbox, ServerFacts};
use crate::connect::connect;
use crate::error::PgError;
use crate::extensions::{self, CommentOnExtension, CreateExtension};
use crate::source::SchemaSource;

/// Refuses, before anything is created, an extension a file creates that is neither allowed nor
/// trusted on this server. Extensions the server does not have are left to PostgreSQL's own error.
pub(super) async fn check_untrusted(
    admin: &Client,
    created: &[(&Path, CreateExtension)],
    opts: &ShadowOptions,
) -> Result<(), ShadowError> {
    for (path, ext) in created.iter().filter(|(_, e)| !opts.allows(&e.name)) {
        let trusted: Option<bool> = admin
            .query_opt(
                "SELECT v.trusted FROM pg_catalog.pg_available_extension_versions v \
                 WHERE v.name = $1 AND v.version = coalesce($2, \
                   (SELECT a.default_version FROM pg_catalog.pg_available_extensions a WHERE a.name = $1))",
                &[&ext.name, &ext.version],
            )
            .await
            .map_err(|e| PgError::query("reading the available extensions", e))?
            .map(|r| r.get(0));
        if trusted == Some(false) {
            return Err(ShadowError::ExtensionNotAllowed {
                file: path.to_path_buf(),
                line: ext.line,
                name: ext.name.clone(),
            });
        }
    }
    Ok(())
}

/// The extensions pgfleet creates as the admin: the allowed ones the files create, and the
/// comments the files set on them (only their owner, the admin, may).
pub(super) struct AdminExtensions<'a> {
    /// Their names.
    pub(super) names: Vec<String>,
    /// The `CREATE EXTENSION` statements, in file order.
    creates: Vec<(&'a Path, CreateExtension)>,
    /// The `COMMENT ON EXTENSION` statements on them, with their lines, in file order.
    comments: Vec<(&'a Path, usize, CommentOnExtension)>,
}

impl<'a> AdminExtensions<'a> {
    pub(super) fn new(
        source: &'a SchemaSource,
        created: Vec<(&'a Path, CreateExtension)>,
        opts: &ShadowOptions,
    ) -> Self {
        let creates: Vec<(&Path, CreateExtension)> = created
            .into_iter()
            .filter(|(_, e)| opts.allows(&e.name))
            .collect();
        let mut names: Vec<String> = Vec::new();
        for (_, e) in &creates {
            if !names.contains(&e.name) {
                names.push(e.name.clone());
            }
        }
        let mut comments = Vec::new();
        for f in &source.files {
            for st in crate::split::statements(&f.sql) {
                if let Some(c) = extensions::parse_comment_on_extension(st.text)
                    && names.contains(&c.name)
                {
                    comments.push((f.path.as_path(), st.line, c));
                }
            }
        }
        Self {
            names,
            creates,
            comments,
        }
    }
}

/// As the admin, in the fresh shadow database, before the role ran anything: gives the role
/// `public` on PostgreSQL 13/14 (superuser admin), creates the allowed extensions (and the schemas they are
/// created in, owned by the role) and sets the files' comments on them. Returns the schemas it
/// created.
pub(super) async fn prepare_database(
    dev: &Config,
    server: &ServerFacts,
    sandbox: &Sandbox,
    created: &AdminExtensions<'_>,
) -> Result<Vec<String>, ShadowError> {
    let own_public = server.version_num < 150000 && server.superuser;
    if created.creates.is_empty() && !own_public {
        return Ok(Vec::new());
    }
    let mut config = dev.clone();
    config.dbname(&sandbox.name);
    let db = connect(&config).await?;
    let role = quote::ident(&sandbox.name);
    if own_public {
        // Before 15, `public` belongs to the bootstrap superuser: the role is made its owner, as
        // the database owner effectively is from 15 on (through pg_database_owner).
        db.batch_execute(&format!("ALTER SCHEMA public OWNER TO {role}"))
            .await
            .map_err(|e| {
                PgError::query(
                    "giving schema public of the shadow database to the shadow role (PostgreSQL 13/14)",
                    e,
                )
            })?;
    }
    let mut schemas: Vec<String> = Vec::new();
    for (path, ext) in &created.creates {
        if let Some(s) = ext.schema.as_ref().filter(|s| *s != "public")
            && !schemas.contains(s)
        {
            db.execute(
                &format!(
                    "CREATE SCHEMA IF NOT EXISTS {} AUTHORIZATION {role}",
                    quote::ident(s)
                ),
                &[],
            )
            .await
            .map_err(|e| statement_error(path, ext.line, &e))?;
            schemas.push(s.clone());
        }
        // Always CASCADE: the extensions it requires come along, created by the admin too.
        let sql = CreateExtension {
            cascade: true,
            ..ext.clone()
        }
        .to_sql();
        // One statement over the extended protocol: never more than this one runs as the admin.
        db.execute(&sql, &[])
            .await
            .map_err(|e| statement_error(path, ext.line, &e))?;
    }
    for (path, line, comment) in &created.comments {
        db.execute(&comment.to_sql(), &[])
            .await
            .map_err(|e| statement_error(path, *line, &e))?;
    }
    Ok(schemas)
}
