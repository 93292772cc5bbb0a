//! The shadow database: a scratch database on a dev server where the desired schema is applied and
//! introspected, so PostgreSQL itself normalizes it (no home-made SQL parser).
//!
//! Schema and migration files are code from a repository, and the dev server is often production's
//! server, reached as a superuser. So the files never run as the dev URL's role. For each run
//! pgfleet creates, as that role (the *admin*):
//!
//! 1. a throwaway role `pgfleet_shadow_<unix time>_<random>`: `LOGIN NOSUPERUSER NOCREATEDB
//!    NOCREATEROLE NOREPLICATION NOBYPASSRLS NOINHERIT CONNECTION LIMIT 1` (`INHERIT` on PostgreSQL
//!    15, see 2.), valid for one hour, with the SCRAM verifier of a random password (the password
//!    itself never reaches the server); it is a member of no role;
//! 2. a database of the same name from `template0`, **owned by that role**, `CONNECT` revoked from
//!    `PUBLIC`. Its `public` schema belongs to `pg_database_owner`, whose rights the database owner
//!    has: on 16+ always, on 15 only through inheritance, which is why the role is `INHERIT` there
//!    (it is a member of no role, so that is all it inherits; a dev role that is not a superuser
//!    could not hand `public` over instead). On 13/14 `public` belongs to the bootstrap superuser:
//!    a superuser admin makes the role its owner; otherwise the role relies on `PUBLIC`'s default
//!    `CREATE` there;
//! 3. the extensions the files create that are in [`ShadowOptions::allowed_extensions`], created by
//!    the admin in the fresh database before any file runs ([`crate::extensions`]).
//!
//! Then pgfleet **logs in as the role** (the dev URL's host and port, the role's password: a `SET
//! ROLE` in the admin's session could be undone by the files), takes the role's `LOGIN` away (its
//! session goes on; a file that changes the role's own password cannot log in with it elsewhere),
//! replays the files with their `CREATE EXTENSION` statements made idempotent, and introspects in
//! that session. The database and
//! the role are dropped afterwards in every case: on success, on error, when the replay panics,
//! and (best effort, on the current runtime) when the future is dropped. What a killed process left
//! behind is dropped by the next run on that server after 15 minutes (`sweep.rs`).
//!
//! Before anything is created, [`crate::guard::check_source`] refuses server-level statements with
//! file and line, and an extension that is neither trusted nor allowed is refused with the flag to
//! allow it. Those checks give clear errors; the unprivileged login is what protects the server
//! from what they cannot see (dynamic SQL, function bodies).
//!
//! The dev URL's role needs `CREATEDB` and `CREATEROLE` (or is a superuser), and the server must
//! accept password logins (`scram-sha-256` or `md5` in `pg_hba.conf`) for any role from where
//! pgfleet connects. Creating untrusted extensions such as pgvector needs a superuser.
//!
//! The steps live in submodules: `options.rs` (which extensions pgfleet creates), `sandbox.rs` (the
//! role and database, the login, their drop), `prepare.rs` (what the admin does before the files
//! run), `replay.rs` (running the files, introspecting), `sweep.rs` (what killed runs left) and
//! `error.rs` ([`ShadowError`], also returned by [`crate::guard`]); this module runs them in order.

pub(crate) mod error;
mod options;
mod prepare;
mod replay;
mod sandbox;
mod sweep;

use std::any::Any;
use std::path::Path;

use pgfleet_schema::Model;
use pgfleet_schema::quote;
use tokio_postgres::{Client, Config};

use crate::connect::connect;
use crate::error::PgError;
use crate::extensions::{self, CreateExtension};
use crate::guard;
use crate::source::{SchemaSource, SourceFile};

pub use error::ShadowError;
pub use options::{DEFAULT_ALLOWED_EXTENSIONS, ShadowOptions};
use prepare::{AdminExtensions, check_untrusted, prepare_database};
use replay::{replay_and_introspect, replay_sql};
use sandbox::{CleanupOnDrop, Sandbox, ServerFacts, drop_sandbox, log_in};
use sweep::sweep_stale;

/// Applies `source` to a fresh shadow database on the server of `dev` (its database name is
/// ignored), logged in as a throwaway unprivileged role, and returns the introspected model. The
/// shadow database and role are dropped in every case (see the [module docs](self)).
///
/// # Errors
/// [`ShadowError::Refused`] for a server-level statement and [`ShadowError::ExtensionNotAllowed`]
/// for an untrusted extension that `opts` does not allow (both before anything is created);
/// [`ShadowError::Sql`] for an error in the schema (including a permission error of the sandbox
/// role); [`ShadowError::Server`] when the dev server cannot be used (the role needs `CREATEDB` and
/// `CREATEROLE`, and the server must accept password logins).
///
/// # Panics
/// When replaying or introspecting panics: the panic is resumed after the cleanup.
pub async fn desired_model(
    dev: &Config,
    source: &SchemaSource,
    opts: &ShadowOptions,
) -> Result<Model, ShadowError> {
    guard::check_source(source)?;
    let created: Vec<(&Path, CreateExtension)> = source
        .files
        .iter()
        .flat_map(|f| {
            extensions::created_extensions(&f.sql)
                .into_iter()
                .map(move |e| (f.path.as_path(), e))
        })
        .collect();
    let admin = connect(dev).await?;
    sweep_stale(&admin).await;
    check_untrusted(&admin, &created, opts).await?;
    let created = AdminExtensions::new(source, created, opts);
    let server = ServerFacts::read(&admin).await?;
    let sandbox = Sandbox::new()?;
    // Armed until the explicit cleanup below ran: drops the database and role if this future is
    // dropped half-way.
    let mut cleanup = CleanupOnDrop(Some((dev.clone(), sandbox.name.clone())));
    let outcome = run_in_sandbox(dev, &admin, &server, &sandbox, source, &created).await;
    let admin = if admin.is_closed() {
        connect(dev).await.ok()
    } else {
        Some(admin)
    };
    match admin {
        Some(admin) => {
            drop_sandbox(&admin, &sandbox.name).await;
            cleanup.0 = None;
        }
        None => {
            tracing::warn!(role = %sandbox.name, "lost the admin connection: the shadow database and role are dropped by the next run after 15 minutes")
        }
    }
    match outcome {
        Outcome::Done(result) => result,
        Outcome::Panicked(payload) => std::panic::resume_unwind(payload),
    }
}

/// The names of the extensions installed in the database of `client`, e.g. the database being
/// planned, whose extensions the shadow database may then install too.
///
/// # Errors
/// When the catalog cannot be read.
pub async fn installed_extensions(client: &Client) -> Result<Vec<String>, PgError> {
    Ok(client
        .query(
            "SELECT extname::text FROM pg_catalog.pg_extension ORDER BY 1",
            &[],
        )
        .await
        .map_err(|e| PgError::query("listing the installed extensions", e))?
        .iter()
        .map(|r| r.get(0))
        .collect())
}

enum Outcome {
    Done(Result<Model, ShadowError>),
    Panicked(Box<dyn Any + Send>),
}

/// Aborts a spawned task when dropped.
struct AbortOnDrop<T>(tokio::task::JoinHandle<T>);

impl<T> Drop for AbortOnDrop<T> {
    fn drop(&mut self) {
        self.0.abort();
    }
}

async fn run_in_sandbox(
    dev: &Config,
    admin: &Client,
    server: &ServerFacts,
    sandbox: &Sandbox,
    source: &SchemaSource,
    created: &AdminExtensions<'_>,
) -> Outcome {
    let prepared = async {
        sandbox.create(admin, server).await?;
        let schemas = prepare_database(dev, server, sandbox, created).await?;
        Ok::<_, ShadowError>(schemas)
    }
    .await;
    let schemas = match prepared {
        Ok(s) => s,
        Err(e) => return Outcome::Done(Err(e)),
    };
    let files: Vec<SourceFile> = source
        .files
        .iter()
        .map(|f| SourceFile {
            path: f.path.clone(),
            sql: replay_sql(&f.sql, &schemas, &created.names),
        })
        .collect();
    let client = match log_in(sandbox, dev).await {
        Ok(c) => c,
        Err(e) => return Outcome::Done(Err(e)),
    };
    // Logged in: no other login as the role, whatever the files do to its password (a role may
    // change its own). Only a role with CREATEROLE can give it LOGIN back.
    let no_login = format!("ALTER ROLE {} NOLOGIN", quote::ident(&sandbox.name));
    if let Err(e) = admin.batch_execute(&no_login).await {
        return Outcome::Done(Err(
            PgError::query("locking the shadow role's login", e).into()
        ));
    }
    // On a task of its own, so a panic while replaying or introspecting is caught here and the
    // sandbox still dropped.
    let mut task = AbortOnDrop(tokio::spawn(async move {
        replay_and_introspect(client, &files).await
    }));
    match (&mut task.0).await {
        Ok(result) => Outcome::Done(result),
        Err(e) if e.is_panic() => Outcome::Panicked(e.into_panic()),
        Err(e) => Outcome::Done(Err(ShadowError::Server(PgError::Catalog(format!(
            "the replay was cancelled: {e}"
        ))))),
    }
}
