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
//! behind is dropped by the next run on that server after 15 minutes ([`sweep_stale`]).
//!
//! Before anything is created, [`crate::guard::check_source`] refuses server-level statements with
//! file and line, and an extension that is neither trusted nor allowed is refused with the flag to
//! allow it. Those checks give clear errors; the unprivileged login is what protects the server
//! from what they cannot see (dynamic SQL, function bodies).
//!
//! The dev URL's role needs `CREATEDB` and `CREATEROLE` (or is a superuser), and the server must
//! accept password logins (`scram-sha-256` or `md5` in `pg_hba.conf`) for any role from where
//! pgfleet connects. Creating untrusted extensions such as pgvector needs a superuser.

use std::any::Any;
use std::path::{Path, PathBuf};

use pgfleet_schema::Model;
use pgfleet_schema::quote;
use tokio_postgres::{Client, Config};

use crate::connect::{connect, describe_target};
use crate::error::describe;
use crate::extensions::{self, CommentOnExtension, CreateExtension};
use crate::source::{SchemaSource, SourceFile, line_col};
use crate::{PgError, guard, introspect};

/// Extensions pgfleet creates for schema files by default: pgvector, which pgfleet supports out of
/// the box and which is not a trusted extension.
pub const DEFAULT_ALLOWED_EXTENSIONS: &[&str] = &["vector"];

/// Prefix of the names of shadow databases and roles.
const PREFIX: &str = "pgfleet_shadow_";

/// Shadow databases and roles older than this (by the time in their name) are left over by a killed
/// run.
const STALE_SECS: u64 = 15 * 60;

/// How the desired schema is built.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ShadowOptions {
    /// Extensions pgfleet creates itself, as the dev URL's role, when a file says `CREATE EXTENSION`
    /// for them. Trusted extensions (`pg_trgm`, `citext`, …) need not be listed: the sandbox role
    /// creates them itself. An extension that is neither trusted nor listed is refused. Default:
    /// [`DEFAULT_ALLOWED_EXTENSIONS`].
    pub allowed_extensions: Vec<String>,
}

impl Default for ShadowOptions {
    fn default() -> Self {
        Self {
            allowed_extensions: DEFAULT_ALLOWED_EXTENSIONS
                .iter()
                .map(|s| s.to_string())
                .collect(),
        }
    }
}

impl ShadowOptions {
    /// These options with `names` allowed too (blank names are skipped, duplicates kept once).
    pub fn allow<S: AsRef<str>>(mut self, names: impl IntoIterator<Item = S>) -> Self {
        for name in names {
            let name = name.as_ref().trim();
            if !name.is_empty() && !self.allowed_extensions.iter().any(|a| a == name) {
                self.allowed_extensions.push(name.to_string());
            }
        }
        self
    }

    fn allows(&self, name: &str) -> bool {
        self.allowed_extensions.iter().any(|a| a == name)
    }
}

/// Why the desired schema could not be built.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ShadowError {
    /// The schema SQL has an error: file, line, column and PostgreSQL's message.
    #[error("{}:{line}:{column}: {message}{}", file.display(), hint.as_deref().map(|h| format!("\n  hint: {h}")).unwrap_or_default())]
    Sql {
        /// The file.
        file: PathBuf,
        /// 1-based line (1 when PostgreSQL gave no position).
        line: usize,
        /// 1-based column.
        column: usize,
        /// PostgreSQL's message (severity, message, detail).
        message: String,
        /// A hint from PostgreSQL or pgfleet.
        hint: Option<String>,
    },
    /// A server-level statement in a schema or migration file, refused before anything ran
    /// ([`crate::guard`]).
    #[error("{}:{line}: {statement_kind} is refused: {why}. Schema and migration files describe the schema of one database; statements that act on the server belong to operators, not schema files: nothing was run (if it is really needed, an operator runs it by hand with an administrator's connection)", file.display())]
    Refused {
        /// The file.
        file: PathBuf,
        /// 1-based line of the statement.
        line: usize,
        /// What was refused, e.g. `DROP DATABASE`, `COPY … PROGRAM`.
        statement_kind: String,
        /// Why it does not belong in a schema file.
        why: String,
    },
    /// A file creates an extension that is not trusted (only a superuser may create it) and not in
    /// [`ShadowOptions::allowed_extensions`]; refused before anything ran.
    #[error("{}:{line}: extension \"{name}\" is not trusted, so only a superuser can create it, and schema files are replayed by an unprivileged role; pgfleet creates the extensions you allow itself: pass --allow-extension {name} (or add it to PGFLEET_ALLOWED_EXTENSIONS) if the dev server should install it", file.display())]
    ExtensionNotAllowed {
        /// The file.
        file: PathBuf,
        /// 1-based line of the `CREATE EXTENSION` statement.
        line: usize,
        /// The extension.
        name: String,
    },
    /// The dev server could not be used (connect, create or drop the shadow database or role, log
    /// in as the role).
    #[error(transparent)]
    Server(#[from] PgError),
}

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

/// What pgfleet needs to know about the dev server and its role.
struct ServerFacts {
    version_num: i32,
    superuser: bool,
    /// One hour from now on the server's clock, as a timestamp literal.
    valid_until: String,
}

impl ServerFacts {
    async fn read(admin: &Client) -> Result<Self, PgError> {
        let row = admin
            .query_one(
                "SELECT current_setting('server_version_num')::int, \
                        coalesce((SELECT rolsuper FROM pg_catalog.pg_roles WHERE rolname = current_user), false), \
                        to_char((now() + interval '1 hour') AT TIME ZONE 'UTC', 'YYYY-MM-DD HH24:MI:SS') || '+00'",
                &[],
            )
            .await
            .map_err(|e| PgError::query("reading the dev server's version and role", e))?;
        Ok(Self {
            version_num: row.get(0),
            superuser: row.get(1),
            valid_until: row.get(2),
        })
    }
}

/// The throwaway role and database of one run (they share the name).
struct Sandbox {
    name: String,
    password: String,
}

impl Sandbox {
    fn new() -> Result<Self, PgError> {
        let mut secret = [0u8; 24];
        getrandom::fill(&mut secret).map_err(|e| {
            PgError::Catalog(format!(
                "the system's random source failed ({e}); cannot make a password for the shadow role"
            ))
        })?;
        Ok(Self {
            name: format!("{PREFIX}{}_{}", unix_now(), random_hex()),
            password: hex(&secret),
        })
    }

    /// Creates the role and its database as the admin.
    async fn create(&self, admin: &Client, server: &ServerFacts) -> Result<(), PgError> {
        let role = quote::ident(&self.name);
        let verifier = postgres_protocol::password::scram_sha_256(self.password.as_bytes());
        let q = |context: &'static str| move |e: tokio_postgres::Error| PgError::query(context, e);
        // On 15 the owner of a database gets the rights of pg_database_owner (owner of public)
        // only by inheriting them; from 16 on without.
        let inherit = if (150000..160000).contains(&server.version_num) {
            "INHERIT"
        } else {
            "NOINHERIT"
        };
        admin
            .batch_execute(&format!(
                "CREATE ROLE {role} LOGIN NOSUPERUSER NOCREATEDB NOCREATEROLE NOREPLICATION NOBYPASSRLS \
                 {inherit} CONNECTION LIMIT 1 VALID UNTIL {} PASSWORD {}",
                quote::literal(&server.valid_until),
                quote::literal(&verifier)
            ))
            .await
            .map_err(q("creating the shadow role (the dev URL's role needs CREATEROLE, or to be a superuser)"))?;
        if !server.superuser {
            // CREATE DATABASE … OWNER needs the admin to be able to SET ROLE to the owner.
            admin
                .batch_execute(&format!("GRANT {role} TO CURRENT_USER"))
                .await
                .map_err(q("letting the dev URL's role act as the shadow role"))?;
        }
        admin
            .batch_execute(&format!(
                "CREATE DATABASE {role} OWNER {role} TEMPLATE template0"
            ))
            .await
            .map_err(q(
                "creating the shadow database (the dev URL's role needs CREATEDB)",
            ))?;
        admin
            .batch_execute(&format!("REVOKE ALL ON DATABASE {role} FROM PUBLIC"))
            .await
            .map_err(q("restricting the shadow database to its role"))?;
        Ok(())
    }

    /// Settings to log in as the role to its database.
    fn login(&self, dev: &Config) -> Config {
        let mut config = dev.clone();
        config
            .user(&self.name)
            .password(self.password.as_str())
            .dbname(&self.name);
        config
    }
}

/// Drops the sandbox when dropped while still holding it (the future was dropped before cleanup).
struct CleanupOnDrop(Option<(Config, String)>);

impl Drop for CleanupOnDrop {
    fn drop(&mut self) {
        let Some((dev, name)) = self.0.take() else {
            return;
        };
        match tokio::runtime::Handle::try_current() {
            Ok(handle) => {
                handle.spawn(async move {
                    if let Ok(admin) = connect(&dev).await {
                        drop_sandbox(&admin, &name).await;
                    }
                });
            }
            Err(_) => {
                tracing::warn!(role = %name, "no runtime to drop the shadow database and role: the next run drops them after 15 minutes");
            }
        }
    }
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

/// The extensions pgfleet creates as the admin: the allowed ones the files create, and the
/// comments the files set on them (only their owner, the admin, may).
struct AdminExtensions<'a> {
    /// Their names.
    names: Vec<String>,
    /// The `CREATE EXTENSION` statements, in file order.
    creates: Vec<(&'a Path, CreateExtension)>,
    /// The `COMMENT ON EXTENSION` statements on them, with their lines, in file order.
    comments: Vec<(&'a Path, usize, CommentOnExtension)>,
}

impl<'a> AdminExtensions<'a> {
    fn new(
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
async fn prepare_database(
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

/// The file's SQL as the role runs it: `CREATE EXTENSION` made idempotent (the admin may have
/// created it), `CREATE SCHEMA` too for the schemas the admin created for extensions, and
/// `COMMENT ON EXTENSION` on the admin's extensions replaced by `SELECT NULL` (the admin ran it).
/// Lines do not move.
fn replay_sql(sql: &str, schemas: &[String], admin_extensions: &[String]) -> String {
    let mut out = String::with_capacity(sql.len() + 64);
    let mut copied = 0;
    for stmt in crate::split::statements(sql) {
        let start = stmt.text.as_ptr() as usize - sql.as_ptr() as usize;
        if extensions::parse_comment_on_extension(stmt.text)
            .is_some_and(|c| admin_extensions.contains(&c.name))
        {
            out.push_str(&sql[copied..start]);
            out.push_str("SELECT NULL");
            out.push_str(&"\n".repeat(stmt.text.matches('\n').count()));
            copied = start + stmt.text.len();
        } else if let Some(at) =
            extensions::insert_if_not_exists_at(stmt.text, &["create", "extension"])
                .or_else(|| extensions::create_schema_at(stmt.text, schemas))
        {
            out.push_str(&sql[copied..start + at]);
            out.push_str(" IF NOT EXISTS");
            copied = start + at;
        }
    }
    out.push_str(&sql[copied..]);
    out
}

/// Refuses, before anything is created, an extension a file creates that is neither allowed nor
/// trusted on this server. Extensions the server does not have are left to PostgreSQL's own error.
async fn check_untrusted(
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

/// Drops the shadow database and role (their sessions first). Failures are logged: the next run's
/// sweep retries.
async fn drop_sandbox(admin: &Client, name: &str) {
    let q = quote::ident(name);
    if let Err(e) = admin
        .batch_execute(&format!("DROP DATABASE IF EXISTS {q} WITH (FORCE)"))
        .await
    {
        tracing::warn!(database = %name, "could not drop the shadow database: {}", describe(&e));
    }
    // A session of the role elsewhere (it may only log in to databases PUBLIC may connect to).
    let _ = admin
        .execute(
            "SELECT pg_catalog.pg_terminate_backend(pid) FROM pg_catalog.pg_stat_activity WHERE usename = $1",
            &[&name],
        )
        .await;
    if let Err(e) = admin
        .batch_execute(&format!("DROP ROLE IF EXISTS {q}"))
        .await
    {
        tracing::warn!(role = %name, "could not drop the shadow role: {}", describe(&e));
    }
}

/// The creation time in a shadow database's or role's name (`pgfleet_shadow_<secs>_<hex>`).
fn created_at(name: &str) -> Option<u64> {
    let (secs, random) = name.strip_prefix(PREFIX)?.split_once('_')?;
    let hexdigits = !random.is_empty() && random.chars().all(|c| c.is_ascii_hexdigit());
    hexdigits.then(|| secs.parse().ok()).flatten()
}

/// Drops shadow databases and roles a killed process left behind: older than 15 minutes (the
/// creation time is in the name), databases only with nobody connected, roles only when they own
/// nothing any more (a run still going keeps its database, and so its role).
async fn sweep_stale(admin: &Client) {
    let now = unix_now();
    let Ok(rows) = admin
        .query(
            "SELECT datname::text FROM pg_catalog.pg_database d WHERE datname LIKE 'pgfleet\\_shadow\\_%' \
             AND NOT EXISTS (SELECT FROM pg_catalog.pg_stat_activity a WHERE a.datid = d.oid)",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        // Names without a time come from older pgfleet versions: also stale.
        let created = name
            .strip_prefix(PREFIX)
            .and_then(|rest| rest.split('_').next())
            .and_then(|t| t.parse::<u64>().ok());
        if created.is_none_or(|t| now.saturating_sub(t) > STALE_SECS) {
            let sql = format!(
                "DROP DATABASE IF EXISTS {} WITH (FORCE)",
                quote::ident(&name)
            );
            if admin.batch_execute(&sql).await.is_ok() {
                tracing::info!(database = %name, "dropped a stale shadow database left by an interrupted run");
            }
        }
    }
    let Ok(rows) = admin
        .query(
            "SELECT rolname::text FROM pg_catalog.pg_roles \
             WHERE rolname LIKE 'pgfleet\\_shadow\\_%' AND NOT rolsuper",
            &[],
        )
        .await
    else {
        return;
    };
    for row in rows {
        let name: String = row.get(0);
        // Only names pgfleet makes: a role of someone else's named pgfleet_shadow_… stays.
        if created_at(&name).is_some_and(|t| now.saturating_sub(t) > STALE_SECS) {
            let sql = format!("DROP ROLE IF EXISTS {}", quote::ident(&name));
            match admin.batch_execute(&sql).await {
                Ok(()) => {
                    tracing::info!(role = %name, "dropped a stale shadow role left by an interrupted run")
                }
                Err(e) => {
                    tracing::debug!(role = %name, "kept a stale shadow role: {}", describe(&e))
                }
            }
        }
    }
}

/// Logs in as the sandbox role to its database.
async fn log_in(sandbox: &Sandbox, dev: &Config) -> Result<Client, ShadowError> {
    let login = sandbox.login(dev);
    connect(&login).await.map_err(|e| match e {
        PgError::Connect { reason, .. } => ShadowError::Server(PgError::Connect {
            target: describe_target(&login),
            reason: format!(
                "{reason}; pgfleet replays schema files logged in as a throwaway role with a password, over the dev URL's host and port: the server's pg_hba.conf must accept password logins (scram-sha-256 or md5) there for any role"
            ),
        }),
        other => ShadowError::Server(other),
    })
}

/// Replays the files and introspects, in the session of the sandbox role.
async fn replay_and_introspect(client: Client, files: &[SourceFile]) -> Result<Model, ShadowError> {
    for file in files {
        if let Err(batch_err) = client.batch_execute(&file.sql).await {
            // The batch ran in one implicit transaction, so nothing of this file is left. Run it
            // again statement by statement, as psql would: that finds the failing statement when
            // PostgreSQL gave no position, and lets statements that refuse to run in a transaction
            // block (CREATE INDEX CONCURRENTLY) work.
            run_statements(&client, &file.path, &file.sql, &batch_err).await?;
        }
    }
    if std::env::var("PGFLEET_FAILPOINT").is_ok_and(|f| f == "shadow:after-replay:panic") {
        panic!("failpoint shadow:after-replay:panic reached");
    }
    Ok(introspect::introspect(&client).await?)
}

async fn run_statements(
    client: &Client,
    path: &Path,
    sql: &str,
    batch_err: &tokio_postgres::Error,
) -> Result<(), ShadowError> {
    for stmt in crate::split::statements(sql) {
        if let Err(e) = client.batch_execute(stmt.text).await {
            let offset = stmt.text.as_ptr() as usize - sql.as_ptr() as usize;
            let chars_before = sql[..offset].chars().count();
            let mut err = sql_error(path, sql, &e, chars_before);
            if let ShadowError::Sql { line, column, .. } = &mut err
                && !matches!(
                    e.as_db_error().and_then(|d| d.position()),
                    Some(tokio_postgres::error::ErrorPosition::Original(_))
                )
            {
                *line = stmt.line;
                *column = 1;
            }
            return Err(err);
        }
    }
    // Each statement ran on its own, though the batch failed: report the batch's error only if it
    // was not about transaction blocks (which running them one by one avoids).
    if batch_err
        .as_db_error()
        .is_some_and(|d| d.code().code() == "25001")
    {
        Ok(())
    } else {
        Err(sql_error(path, sql, batch_err, 0))
    }
}

/// `offset` is the number of characters of `sql` before the statement that failed (0 for a batch).
fn sql_error(path: &Path, sql: &str, e: &tokio_postgres::Error, offset: usize) -> ShadowError {
    let Some(db) = e.as_db_error() else {
        return ShadowError::Server(PgError::Catalog(format!(
            "applying {}: {}",
            path.display(),
            describe(e)
        )));
    };
    let (line, column) = match db.position() {
        Some(tokio_postgres::error::ErrorPosition::Original(p)) => {
            line_col(sql, offset + *p as usize)
        }
        _ => (1, 1),
    };
    ShadowError::Sql {
        file: path.to_path_buf(),
        line,
        column,
        message: message(db),
        hint: hint(db),
    }
}

/// An error of a statement pgfleet ran for the file's statement at `line` (creating an allowed
/// extension).
fn statement_error(path: &Path, line: usize, e: &tokio_postgres::Error) -> ShadowError {
    match e.as_db_error() {
        Some(db) => ShadowError::Sql {
            file: path.to_path_buf(),
            line,
            column: 1,
            message: message(db),
            hint: hint(db),
        },
        None => ShadowError::Server(PgError::Catalog(format!(
            "creating the extension of {}:{line}: {}",
            path.display(),
            describe(e)
        ))),
    }
}

/// Severity, message and detail.
fn message(db: &tokio_postgres::error::DbError) -> String {
    let mut message = format!("{}: {}", db.severity(), db.message());
    if let Some(d) = db.detail() {
        message.push_str(&format!(" ({d})"));
    }
    message
}

/// PostgreSQL's hint, or pgfleet's for errors it can explain.
fn hint(db: &tokio_postgres::error::DbError) -> Option<String> {
    let msg = db.message();
    if msg.contains("extension \"vector\"") && msg.contains("not available") {
        return Some(
            "this server has no pgvector; use the embedded PostgreSQL 18 with pgvector (`pgfleet setup`, then `pgfleet up`) as --dev-url, or install pgvector on this server".into(),
        );
    }
    if let Some(name) = msg
        .strip_prefix("permission denied to create extension \"")
        .and_then(|r| r.split('"').next())
    {
        return Some(format!(
            "schema files are replayed by an unprivileged role, which may only create trusted extensions; pgfleet creates the extensions you allow itself: pass --allow-extension {name} (or add it to PGFLEET_ALLOWED_EXTENSIONS)"
        ));
    }
    if let Some(name) = msg
        .strip_prefix("must be owner of extension ")
        .map(|r| r.trim_matches('"'))
    {
        return Some(format!(
            "pgfleet created extension {name} itself, as the dev server's role, because it is allowed; the role that replays schema files may not alter, move or drop it (comments on it are set by pgfleet)"
        ));
    }
    if db.code().code() == "42501" {
        let theirs = db.hint().map(|h| format!("{h}; ")).unwrap_or_default();
        return Some(format!(
            "{theirs}schema files are replayed by a throwaway role that owns the shadow database and nothing else: statements that need more (roles, databases, server files and programs, superuser-only features) belong to operators, not schema files"
        ));
    }
    db.hint().map(str::to_string)
}

fn unix_now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn random_hex() -> String {
    let mut buf = [0u8; 6];
    if getrandom::fill(&mut buf).is_err() {
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        buf[..4].copy_from_slice(&nanos.to_le_bytes());
        buf[4..].copy_from_slice(&(std::process::id() as u16).to_le_bytes());
    }
    hex(&buf)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_carry_their_creation_time() {
        assert_eq!(
            created_at("pgfleet_shadow_1700000000_0a1b2c3d4e5f"),
            Some(1_700_000_000)
        );
        assert_eq!(created_at("pgfleet_shadow_reader"), None);
        assert_eq!(created_at("pgfleet_shadow_1700000000_x"), None);
        assert_eq!(created_at("pgfleet_shadow_1700000000_"), None);
        assert_eq!(created_at("other_1700000000_ab"), None);
        let s = Sandbox::new().unwrap();
        assert!(
            created_at(&s.name).is_some_and(|t| t + 5 >= unix_now()),
            "{}",
            s.name
        );
        assert_eq!(s.password.len(), 48);
        assert_ne!(s.password, Sandbox::new().unwrap().password);
    }

    #[test]
    fn options_allow_more_extensions() {
        let o = ShadowOptions::default().allow(["pg_trgm", " vector ", "", "postgis"]);
        assert_eq!(o.allowed_extensions, ["vector", "pg_trgm", "postgis"]);
        assert!(o.allows("postgis") && !o.allows("dblink"));
    }

    #[test]
    fn replayed_sql_keeps_its_lines() {
        let sql = "CREATE SCHEMA ext;\nCREATE EXTENSION vector WITH SCHEMA ext;\nCOMMENT ON EXTENSION vector\n  IS 'v';\nCOMMENT ON EXTENSION pg_trgm IS 't';\nCREATE SCHEMA app;\n";
        let replayed = replay_sql(sql, &["ext".to_string()], &["vector".to_string()]);
        assert_eq!(
            replayed,
            "CREATE SCHEMA IF NOT EXISTS ext;\nCREATE EXTENSION IF NOT EXISTS vector WITH SCHEMA ext;\nSELECT NULL\n;\nCOMMENT ON EXTENSION pg_trgm IS 't';\nCREATE SCHEMA app;\n"
        );
        assert_eq!(replayed.lines().count(), sql.lines().count());
    }
}
